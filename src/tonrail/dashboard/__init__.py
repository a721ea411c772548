"""The admin analytics dashboard: server-rendered pages (Jinja2 + htmx), at /dashboard.

Core: `sessions` (JWT cookie, CSRF), `deps` (who is signed in, what they may do), `templating`
(escaping, formatting), `assets` (htmx and Chart.js from npm). Each page is a module in
`pages/` exporting `router`; `routes.build_router()` mounts them all.
"""
