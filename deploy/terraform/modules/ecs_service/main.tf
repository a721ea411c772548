# One task definition + service + autoscaling; the root module uses it for both api and worker.

resource "aws_cloudwatch_log_group" "service" {
  name              = "/ecs/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_ecs_task_definition" "service" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = var.execution_role_arn
  task_role_arn            = var.task_role_arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # The root filesystem is read-only; the service writes only under DATA_DIR=/data, a task
  # volume. The image declares /data as a VOLUME owned by its user, which is what gives
  # Fargate's bind mount that owner (a plain mount would be root's, 0755).
  volume {
    name = "data"
  }

  container_definitions = jsonencode([
    {
      name                   = "tonrail"
      image                  = var.image
      command                = var.command
      essential              = true
      readonlyRootFilesystem = true
      stopTimeout            = 60
      portMappings = var.container_port == null ? [] : [
        { containerPort = var.container_port, protocol = "tcp" }
      ]
      environment = [for k in sort(keys(var.environment)) : { name = k, value = var.environment[k] }]
      secrets     = [for k in sort(keys(var.secrets)) : { name = k, valueFrom = var.secrets[k] }]
      mountPoints = [{ sourceVolume = "data", containerPath = "/data", readOnly = false }]
      linuxParameters = {
        initProcessEnabled = true
        capabilities       = { drop = ["ALL"] }
      }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.service.name
          awslogs-region        = var.region
          awslogs-stream-prefix = "tonrail"
        }
      }
    }
  ])
}

resource "aws_ecs_service" "service" {
  name                               = var.name
  cluster                            = var.cluster_id
  task_definition                    = aws_ecs_task_definition.service.arn
  desired_count                      = var.min_tasks
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = var.target_group_arn == null ? null : 60
  propagate_tags                     = "SERVICE"
  enable_ecs_managed_tags            = true

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.security_group_ids
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  dynamic "load_balancer" {
    for_each = var.target_group_arn == null ? [] : [var.target_group_arn]
    content {
      target_group_arn = load_balancer.value
      container_name   = "tonrail"
      container_port   = var.container_port
    }
  }

  lifecycle {
    # Autoscaling owns the number of tasks once the service exists. The deploy script owns
    # which revision runs: apply registers the new task definition, the script runs
    # `tonrail migrate` with it and only then moves the service (and back, on rollback).
    ignore_changes = [desired_count, task_definition]
  }
}

resource "aws_appautoscaling_target" "service" {
  service_namespace  = "ecs"
  resource_id        = "service/${var.cluster_name}/${aws_ecs_service.service.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_tasks
  max_capacity       = var.max_tasks
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service.service_namespace
  resource_id        = aws_appautoscaling_target.service.resource_id
  scalable_dimension = aws_appautoscaling_target.service.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_pct
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "memory" {
  name               = "${var.name}-memory"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service.service_namespace
  resource_id        = aws_appautoscaling_target.service.resource_id
  scalable_dimension = aws_appautoscaling_target.service.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.memory_target_pct
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageMemoryUtilization"
    }
  }
}

# The backlog is one number for the whole deployment, not a per-task average, so it drives a
# step policy (add tasks while it is high) rather than target tracking; scale-in is left to the
# CPU and memory policies.
resource "aws_appautoscaling_policy" "pending" {
  count = var.pending_scale_out == null ? 0 : 1

  name               = "${var.name}-pending"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.service.service_namespace
  resource_id        = aws_appautoscaling_target.service.resource_id
  scalable_dimension = aws_appautoscaling_target.service.scalable_dimension

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 120
    metric_aggregation_type = "Maximum"

    # Offsets are relative to the alarm threshold: +1 task just above it, +2 at twice it.
    step_adjustment {
      metric_interval_lower_bound = 0
      metric_interval_upper_bound = var.pending_scale_out.threshold
      scaling_adjustment          = 1
    }

    step_adjustment {
      metric_interval_lower_bound = var.pending_scale_out.threshold
      scaling_adjustment          = 2
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "pending_scale_out" {
  count = var.pending_scale_out == null ? 0 : 1

  alarm_name          = "${var.name}-scale-out-pending"
  alarm_description   = "Scale ${var.name} out: ${var.pending_scale_out.metric_name} above ${var.pending_scale_out.threshold}."
  namespace           = var.pending_scale_out.namespace
  metric_name         = var.pending_scale_out.metric_name
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.pending_scale_out.threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.pending[0].arn]
}
