# Alarms of the deployment guide, routed to one encrypted SNS topic (e-mail, PagerDuty...),
# and a dashboard of the payment metrics the service publishes (src/tonrail/monitoring/
# cloudwatch.py: no dimensions, namespace CLOUDWATCH_NAMESPACE).

resource "aws_sns_topic" "alarms" {
  name              = "${local.prefix}-alarms"
  kms_master_key_id = aws_kms_key.main.arn
}

resource "aws_sns_topic_subscription" "email" {
  count = var.payment_alert_email == "" ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.payment_alert_email
}

resource "aws_sns_topic_subscription" "https" {
  for_each = toset(var.alarm_https_endpoints)

  topic_arn              = aws_sns_topic.alarms.arn
  protocol               = "https"
  endpoint               = each.value
  endpoint_auto_confirms = true
}

locals {
  alarm_actions = [aws_sns_topic.alarms.arn]
}

# --- payment alarms (the guide's monitoring thresholds) ------------------------------------

resource "aws_cloudwatch_metric_alarm" "success_rate_low" {
  alarm_name          = "${local.prefix}-success-rate-low"
  alarm_description   = "Transaction success rate below ${var.alarm_success_rate_min_pct} % (guide: alert if < 95 %). See the runbook in docs/DEPLOY.md."
  namespace           = var.cloudwatch_namespace
  metric_name         = "SuccessRate"
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "LessThanThreshold"
  threshold           = var.alarm_success_rate_min_pct
  treat_missing_data  = "notBreaching" # published only when payments finished in the window
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "pending_high" {
  alarm_name          = "${local.prefix}-pending-high"
  alarm_description   = "More than ${var.alarm_pending_max} pending transactions (guide: alert if > 100)."
  namespace           = var.cloudwatch_namespace
  metric_name         = "PendingTransactions"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_pending_max
  treat_missing_data  = "breaching" # the service publishes it every cycle: silence is an outage
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "gas_price_high" {
  alarm_name          = "${local.prefix}-gas-price-high"
  alarm_description   = "Basechain gas price above ${var.alarm_gas_price_max} nanoton per gas (guide: alert if unusually high)."
  namespace           = var.cloudwatch_namespace
  metric_name         = "GasPrice"
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_gas_price_max
  treat_missing_data  = "notBreaching" # published only once the fee sampler has read it
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# --- load balancer alarms ------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "alb_5xx" {
  alarm_name          = "${local.prefix}-alb-5xx"
  alarm_description   = "The load balancer answered more than ${var.alarm_http_5xx_max} 5xx in 5 minutes (no healthy target, timeouts)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_ELB_5XX_Count"
  dimensions          = { LoadBalancer = aws_lb.main.arn_suffix }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_http_5xx_max
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "target_5xx" {
  alarm_name          = "${local.prefix}-api-5xx"
  alarm_description   = "The api answered more than ${var.alarm_http_5xx_max} 5xx in 5 minutes."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_5XX_Count"
  dimensions          = { LoadBalancer = aws_lb.main.arn_suffix, TargetGroup = aws_lb_target_group.api.arn_suffix }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_http_5xx_max
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "unhealthy_targets" {
  alarm_name          = "${local.prefix}-unhealthy-targets"
  alarm_description   = "At least one api task fails the /readyz health check."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = { LoadBalancer = aws_lb.main.arn_suffix, TargetGroup = aws_lb_target_group.api.arn_suffix }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# --- dashboard -----------------------------------------------------------------------------

locals {
  # One widget per metric the service publishes, dimensionless, in its namespace.
  payment_metric_widgets = [
    {
      type = "metric", x = 0, y = 0, width = 8, height = 6
      properties = {
        title   = "Transactions finished (in the service's 5-minute window)", region = var.aws_region, view = "timeSeries", stat = "Average", period = 300
        metrics = [[var.cloudwatch_namespace, "TransactionCount"]]
      }
    },
    {
      type = "metric", x = 8, y = 0, width = 8, height = 6
      properties = {
        title   = "Success rate (%)", region = var.aws_region, view = "timeSeries", stat = "Average", period = 300
        metrics = [[var.cloudwatch_namespace, "SuccessRate"]]
        yAxis   = { left = { min = 0, max = 100 } }
        annotations = {
          horizontal = [{ label = "alarm", value = var.alarm_success_rate_min_pct }]
        }
      }
    },
    {
      type = "metric", x = 16, y = 0, width = 8, height = 6
      properties = {
        title   = "Pending transactions", region = var.aws_region, view = "timeSeries", stat = "Maximum", period = 60
        metrics = [[var.cloudwatch_namespace, "PendingTransactions"]]
        annotations = {
          horizontal = [
            { label = "scale out", value = local.scaling.pending_scale_out },
            { label = "alarm", value = var.alarm_pending_max },
          ]
        }
      }
    },
    {
      type = "metric", x = 0, y = 6, width = 8, height = 6
      properties = {
        title   = "Volume succeeded (USDT, in the service's 5-minute window)", region = var.aws_region, view = "timeSeries", stat = "Average", period = 300
        metrics = [[var.cloudwatch_namespace, "TotalVolume"]]
      }
    },
    {
      type = "metric", x = 8, y = 6, width = 8, height = 6
      properties = {
        title   = "Gas price (nanoton per gas)", region = var.aws_region, view = "timeSeries", stat = "Maximum", period = 300
        metrics = [[var.cloudwatch_namespace, "GasPrice"]]
        annotations = {
          horizontal = [{ label = "alarm", value = var.alarm_gas_price_max }]
        }
      }
    },
  ]
}

resource "aws_cloudwatch_dashboard" "payments" {
  dashboard_name = "${local.prefix}-payments"
  dashboard_body = jsonencode({
    widgets = concat(local.payment_metric_widgets, [
      {
        type = "metric", x = 16, y = 6, width = 8, height = 6
        properties = {
          title = "Tasks: CPU and memory (%)", region = var.aws_region, view = "timeSeries", stat = "Average", period = 60
          metrics = [
            ["AWS/ECS", "CPUUtilization", "ClusterName", aws_ecs_cluster.main.name, "ServiceName", module.api.service_name],
            ["AWS/ECS", "MemoryUtilization", "ClusterName", aws_ecs_cluster.main.name, "ServiceName", module.api.service_name],
            ["AWS/ECS", "CPUUtilization", "ClusterName", aws_ecs_cluster.main.name, "ServiceName", module.worker.service_name],
            ["AWS/ECS", "MemoryUtilization", "ClusterName", aws_ecs_cluster.main.name, "ServiceName", module.worker.service_name],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 12, height = 6
        properties = {
          title = "Load balancer: requests and 5xx", region = var.aws_region, view = "timeSeries", stat = "Sum", period = 60
          metrics = [
            ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", aws_lb.main.arn_suffix],
            ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "LoadBalancer", aws_lb.main.arn_suffix],
            ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", aws_lb.main.arn_suffix],
          ]
        }
      },
      {
        type = "alarm", x = 12, y = 12, width = 12, height = 6
        properties = {
          title = "Alarms"
          alarms = [
            aws_cloudwatch_metric_alarm.success_rate_low.arn,
            aws_cloudwatch_metric_alarm.pending_high.arn,
            aws_cloudwatch_metric_alarm.gas_price_high.arn,
            aws_cloudwatch_metric_alarm.alb_5xx.arn,
            aws_cloudwatch_metric_alarm.target_5xx.arn,
            aws_cloudwatch_metric_alarm.unhealthy_targets.arn,
          ]
        }
      },
    ])
  })
}
