/**
 * The deployment choices that are not measured: one typed place, read by the ECS definitions
 * and the CloudFormation stack alike. Everything load-dependent comes from capacity.json
 * (see sizing.ts); nothing here is copied into a second file.
 */

/**
 * The container's graceful drain (issue 5). On SIGTERM the server keeps answering but fails
 * /health for `delayMs` (the load balancer stops routing to it), then stops accepting and waits
 * at most `timeoutMs` for requests in flight. Names and defaults are the container's; change
 * them here only, and the task's stopTimeout and the target group's deregistration delay follow.
 */
export const drain = {
  delay: { variable: 'IIIF_DRAIN_DELAY_MS', ms: 5_000 },
  timeout: { variable: 'IIIF_DRAIN_TIMEOUT_MS', ms: 20_000 },
} as const;

export const settings = {
  name: 'iiif-elastic',
  container: {
    name: 'iiif',
    port: 3000,
    healthPath: '/health',
    /** Node starts in under a second; the grace covers a cold host pulling the image. */
    healthStartPeriodSeconds: 20,
    /** Many tiles in flight plus S3 sockets plus cached files: well above Docker's 1024. */
    nofile: 65_536,
    /** Mount points of the task-scoped volumes (the root filesystem is read-only). */
    cacheMount: '/cache',
    tmpMount: '/tmp',
    /** Per container; the host's disk is shared by every container packed on it. */
    sourceCacheBytes: 4 * 1024 ** 3,
    pyramidCacheBytes: 4 * 1024 ** 3,
  },
  /**
   * Memory: the reservation (placement) is the peak RSS measured at R_max plus this margin;
   * the hard limit is the memory the capacity run was limited to.
   */
  memoryMarginFactor: 1.25,
  /** Docker's ephemeral range for hostPort 0 on the ECS-optimized AMIs (32768–61000, older ones up to 65535). */
  hostPortRange: { from: 32_768, to: 65_535 },
  targetGroup: {
    healthIntervalSeconds: 5,
    healthTimeoutSeconds: 3,
    healthyThreshold: 2,
    unhealthyThreshold: 2,
  },
  /** Stays below the server's keep-alive timeout (72 s) so the ALB never reuses a closed socket. */
  albIdleTimeoutSeconds: 60,
  service: {
    /** Covers cold start on a fresh host before the ALB's health checks count. */
    healthCheckGracePeriodSeconds: 30,
    minimumHealthyPercent: 100,
    maximumPercent: 200,
    /** Defaults of the stack's MinTasks/MaxTasks parameters and the desiredCount of service.json. */
    minTasks: 2,
    maxTasks: 40,
  },
  /** Defaults of the stack's host parameters. */
  hosts: { instanceType: 'c7i.2xlarge', min: 1, max: 10 },
  /** Hosts kept this full so a new container usually finds room without waiting for a new host. */
  capacityProviderTargetPercent: 90,
  /** Target tracking cooldowns: scale out fast, scale in slowly. */
  scaleOutCooldownSeconds: 60,
  scaleInCooldownSeconds: 300,
  logRetentionDays: 30,
} as const;
