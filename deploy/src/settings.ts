/**
 * The deployment choices that are not measured: one typed place, read by the ECS definitions
 * and the CloudFormation stack alike. Everything load-dependent comes from capacity.json
 * (see sizing.ts), and the timings that must agree with each other are derived in timings.ts;
 * nothing here is copied into a second file.
 */

/** Hardware of the host types the stack offers (the InstanceType parameter's allowed values). */
export interface HostType {
  vcpus: number;
  memoryGiB: number;
}

export const settings = {
  name: 'iiif-elastic',
  container: {
    name: 'iiif',
    port: 3000,
    /**
     * The private listener: /metrics and the operator routes (IIIF_METRICS_PORT). Mapped to a
     * dynamic host port that only the VPC may reach; never registered with the load balancer.
     */
    metricsPort: 9100,
    healthPath: '/health',
    /** Node starts in under a second; the grace covers a cold host pulling the image. */
    healthStartPeriodSeconds: 30,
    /** Many tiles in flight plus S3 sockets plus cached files: well above Docker's 1024. */
    nofile: 65_536,
    /**
     * Mount points of the task-scoped volumes (the root filesystem is read-only). The cache
     * mount is the image's own VOLUME, whose folders belong to the user the server runs as:
     * Docker fills a fresh volume from the image's folder, ownership included. A fresh volume
     * anywhere else is root's, and the server (not root) could not write it.
     */
    cacheMount: '/var/cache/iiif',
    tmpMount: '/tmp',
    /** Per container; the host's root volume is sized for every container that fits on it. */
    sourceCacheBytes: 4 * 1024 ** 3,
    pyramidCacheBytes: 4 * 1024 ** 3,
  },
  /**
   * The server's own bounds that make up the longest request (timings.ts), set explicitly in
   * the task so the deregistration delay and the drain follow them.
   */
  server: {
    /** IIIF_QUEUE_TIMEOUT_MS: longest wait for a render slot. */
    queueTimeoutMs: 10_000,
    /** IIIF_S3_DEADLINE_MS: longest S3 fetch, every attempt and backoff included. */
    s3DeadlineMs: 20_000,
    /** A pyramid built on first touch after the fetch (a 100-megapixel JPEG takes seconds to tens of seconds). */
    pyramidBuildAllowanceMs: 30_000,
    /**
     * IIIF_DRAIN_DELAY_MS: ECS sends SIGTERM only after the load balancer has deregistered the
     * target, so this only covers balancers that watch /health alone; kept short.
     */
    drainDelayMs: 2_000,
  },
  /**
   * Memory: the reservation (placement) is the peak RSS measured at R_max plus this margin;
   * the hard limit is the memory the capacity run was limited to.
   */
  memoryMarginFactor: 1.25,
  /** Docker's ephemeral range for hostPort 0 on the ECS-optimized AMIs (32768–61000, older ones up to 65535). */
  hostPortRange: { from: 32_768, to: 65_535 },
  targetGroup: {
    /**
     * Tolerant of a busy but live task: /health does no I/O, but behind a full event loop it
     * may answer late. Unhealthy only after 3 × 10 s of failures; a draining task answers 503
     * at once and is deregistered by ECS anyway.
     */
    healthIntervalSeconds: 10,
    healthTimeoutSeconds: 6,
    healthyThreshold: 2,
    unhealthyThreshold: 3,
    /**
     * A new container starts with empty caches: the ALB ramps its share up over this time. Slow
     * start rules out least-outstanding-requests routing (the ALB refuses the pair), so the
     * target group routes round robin and the server's admission control absorbs uneven cost.
     */
    slowStartSeconds: 60,
  },
  /** Container-level health check (Docker's), as tolerant as the load balancer's. */
  containerHealthCheck: { intervalSeconds: 10, timeoutSeconds: 6, retries: 3 },
  /** Stays below the server's keep-alive timeout (72 s) so the ALB never reuses a closed socket. */
  albIdleTimeoutSeconds: 60,
  service: {
    /** Covers a cold start on a fresh host (image pull, start, 2 health checks) before failures count. */
    healthCheckGracePeriodSeconds: 90,
    minimumHealthyPercent: 100,
    maximumPercent: 200,
    /** Defaults of the stack's MinTasks/MaxTasks parameters and the desiredCount of service.json. */
    minTasks: 2,
    maxTasks: 40,
  },
  /**
   * Deployment alarms (the circuit breaker rolls back when either fires during a rollout):
   * 5xx answers above this share of requests, and p99 response time above this many times
   * what the capacity run measured at R_max (sizing.ts), each for `evaluationMinutes` minutes.
   */
  alarms: { errorRatePercent: 2, latencyFactor: 2, evaluationMinutes: 3 },
  hosts: {
    /** Default of the InstanceType parameter. */
    instanceType: 'c7i.2xlarge',
    /** The stack's floor is one host per availability zone of HostSubnetIds; this is the ceiling's default. */
    max: 10,
    /** Root volume beyond the caches: the OS, Docker's images and containers, logs (the AMI's own default is 30 GiB). */
    baseVolumeGiB: 30,
    /** Per container beyond its two caches: the file being written before eviction, and /tmp. */
    volumeSlackGiB: 1,
    /** Memory the OS and the ECS agent keep from task placement. */
    reservedMemoryMiB: 512,
  },
  /** The host types offered, with their hardware (a mapping in the template sizes the root volume for each). */
  hostTypes: {
    'c6i.large': { vcpus: 2, memoryGiB: 4 },
    'c6i.xlarge': { vcpus: 4, memoryGiB: 8 },
    'c6i.2xlarge': { vcpus: 8, memoryGiB: 16 },
    'c6i.4xlarge': { vcpus: 16, memoryGiB: 32 },
    'c7i.large': { vcpus: 2, memoryGiB: 4 },
    'c7i.xlarge': { vcpus: 4, memoryGiB: 8 },
    'c7i.2xlarge': { vcpus: 8, memoryGiB: 16 },
    'c7i.4xlarge': { vcpus: 16, memoryGiB: 32 },
    'm6i.large': { vcpus: 2, memoryGiB: 8 },
    'm6i.xlarge': { vcpus: 4, memoryGiB: 16 },
    'm6i.2xlarge': { vcpus: 8, memoryGiB: 32 },
    'm6i.4xlarge': { vcpus: 16, memoryGiB: 64 },
    'm7i.large': { vcpus: 2, memoryGiB: 8 },
    'm7i.xlarge': { vcpus: 4, memoryGiB: 16 },
    'm7i.2xlarge': { vcpus: 8, memoryGiB: 32 },
    'm7i.4xlarge': { vcpus: 16, memoryGiB: 64 },
  } satisfies Record<string, HostType>,
  /** Hosts kept this full so a new container usually finds room without waiting for a new host. */
  capacityProviderTargetPercent: 90,
  /** Target tracking cooldowns: scale out fast, scale in slowly. */
  scaleOutCooldownSeconds: 60,
  scaleInCooldownSeconds: 300,
  logRetentionDays: 30,
  /** ALB access logs: kept this long in their bucket, under this prefix. */
  accessLogs: { retentionDays: 90, prefix: 'alb' },
  /** ECR: how many tagged images to keep (each is a possible rollback), and untagged ones for how long. */
  repository: { keepImages: 50, untaggedDays: 7 },
} as const;
