"""The treasury: funds above the hot wallet's float, held by TON's multisig v2 contract."""
