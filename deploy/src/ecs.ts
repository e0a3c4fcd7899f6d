/**
 * The ECS task and service definitions, built once from the settings and the sizing. The
 * shapes are the ECS API's (what `aws ecs register-task-definition --cli-input-json` and
 * `create-service --cli-input-json` take); the CloudFormation stack passes the same objects to
 * its L1 resources, whose property names are the same camelCase words, with its own references
 * in place of the placeholders. Local runs of the image (deploy/src/local-run.ts) start from
 * the same task definition.
 */
import { settings } from './settings.js';
import type { Sizing } from './sizing.js';

/** What only the deployed stack knows: ARNs, names, the image reference. */
export interface References {
  /** Repository URI and tag, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/iiif-elastic:<git sha>. */
  image: string;
  executionRoleArn: string;
  taskRoleArn: string;
  bucket: string;
  bucketPrefix: string;
  /**
   * Key prefix of the fleet's shared derivative store in the same bucket (IIIF_DERIVATIVE_PREFIX):
   * the only keys the service may write. Empty: each container keeps its own pyramids.
   */
  derivativePrefix: string;
  logGroup: string;
  region: string;
  cluster: string;
  targetGroupArn: string;
  capacityProvider: string;
  /** The deployment alarms (5xx rate, p99 response time) the circuit breaker watches. */
  alarmNames: string[];
}

/**
 * The placeholders in the committed JSON files, filled with `envsubst` from the stack's outputs
 * (deploy/README.md shows how). Their names are the variables to export.
 */
export const PLACEHOLDERS: References = {
  image: '${IMAGE}',
  executionRoleArn: '${EXECUTION_ROLE_ARN}',
  taskRoleArn: '${TASK_ROLE_ARN}',
  bucket: '${IMAGE_BUCKET}',
  bucketPrefix: '${IMAGE_PREFIX}',
  derivativePrefix: '${DERIVATIVE_PREFIX}',
  logGroup: '${LOG_GROUP}',
  region: '${AWS_REGION}',
  cluster: '${CLUSTER}',
  targetGroupArn: '${TARGET_GROUP_ARN}',
  capacityProvider: '${CAPACITY_PROVIDER}',
  alarmNames: ['${ERROR_RATE_ALARM}', '${LATENCY_ALARM}'],
};

/** What the task definition needs from the sizing (a local run supplies its own). */
export type TaskSizing = Pick<Sizing, 'cpuUnits' | 'memoryMiB' | 'memoryReservationMiB' | 'serverEnvironment' | 'timings'>;

const CACHE_VOLUME = 'cache';
const TMP_VOLUME = 'tmp';

/** The container's environment: the server's own variables (src/config.ts), set for ECS. */
function environment(refs: References, sizing: TaskSizing): Array<{ name: string; value: string }> {
  const { cacheMount, sourceCacheBytes, pyramidCacheBytes, port, metricsPort } = settings.container;
  const variables: Record<string, string | number | boolean> = {
    PORT: port,
    // /metrics (and the operator routes) on their own port, which the load balancer never sees.
    IIIF_METRICS_PORT: metricsPort,
    // The SDK's region: on EC2 nothing else guarantees one inside a container.
    AWS_REGION: refs.region,
    IIIF_SOURCE: 's3',
    IIIF_S3_BUCKET: refs.bucket,
    IIIF_S3_PREFIX: refs.bucketPrefix,
    // One conversion per source version for the whole fleet, read by range by every container;
    // an empty value switches the shared store off (src/config.ts).
    IIIF_DERIVATIVE_PREFIX: refs.derivativePrefix,
    // The image's own folders below its VOLUME (docker/Dockerfile), which the cache volume is mounted on.
    IIIF_CACHE_DIR: `${cacheMount}/sources`,
    IIIF_CACHE_MAX_BYTES: sourceCacheBytes,
    IIIF_PYRAMID_DIR: `${cacheMount}/pyramids`,
    IIIF_PYRAMID_CACHE_MAX_BYTES: pyramidCacheBytes,
    ...sizing.serverEnvironment,
    // The ALB sets X-Forwarded-Proto/Host and keeps the access logs (in the stack's log bucket).
    IIIF_TRUST_PROXY: true,
    IIIF_ACCESS_LOG: false,
    ...sizing.timings.environment,
  };
  return Object.entries(variables).map(([name, value]) => ({ name, value: String(value) }));
}

export function taskDefinition(refs: References, sizing: TaskSizing) {
  const { name, port, metricsPort, healthPath, healthStartPeriodSeconds, nofile, cacheMount, tmpMount } = settings.container;
  const { intervalSeconds, timeoutSeconds, retries } = settings.containerHealthCheck;
  // The image has Node but maybe no curl: the health check asks with Node's own fetch.
  const probe = `fetch('http://127.0.0.1:${port}${healthPath}').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`;
  return {
    family: settings.name,
    networkMode: 'bridge',
    requiresCompatibilities: ['EC2'],
    // Task-level CPU is a hard cap (a CFS quota) on EC2, where the container's `cpu` is only a
    // share: the same limit the capacity run measured under (docker run --cpus).
    cpu: String(sizing.cpuUnits),
    memory: String(sizing.memoryMiB),
    executionRoleArn: refs.executionRoleArn,
    taskRoleArn: refs.taskRoleArn,
    // Task-scoped Docker volumes: writable space beside a read-only root, removed with the task.
    volumes: [CACHE_VOLUME, TMP_VOLUME].map((volume) => ({ name: volume, dockerVolumeConfiguration: { scope: 'task', driver: 'local' } })),
    containerDefinitions: [
      {
        name,
        image: refs.image,
        essential: true,
        cpu: sizing.cpuUnits,
        memory: sizing.memoryMiB,
        memoryReservation: sizing.memoryReservationMiB,
        portMappings: [port, metricsPort].map((containerPort) => ({ containerPort, hostPort: 0, protocol: 'tcp' })),
        healthCheck: { command: ['CMD', 'node', '-e', probe], interval: intervalSeconds, timeout: timeoutSeconds, retries, startPeriod: healthStartPeriodSeconds },
        linuxParameters: { initProcessEnabled: true },
        stopTimeout: sizing.timings.stopTimeoutSeconds,
        ulimits: [{ name: 'nofile', softLimit: nofile, hardLimit: nofile }],
        readonlyRootFilesystem: true,
        mountPoints: [
          { sourceVolume: CACHE_VOLUME, containerPath: cacheMount, readOnly: false },
          { sourceVolume: TMP_VOLUME, containerPath: tmpMount, readOnly: false },
        ],
        logConfiguration: {
          logDriver: 'awslogs',
          // non-blocking: a slow CloudWatch never stalls the server's stdout (and so its requests).
          options: { 'awslogs-group': refs.logGroup, 'awslogs-region': refs.region, 'awslogs-stream-prefix': name, mode: 'non-blocking', 'max-buffer-size': '4m' },
        },
        // The CloudWatch agent's Prometheus discovery on ECS finds the metrics port by these labels.
        dockerLabels: { ECS_PROMETHEUS_EXPORTER_PORT: String(metricsPort), ECS_PROMETHEUS_JOB_NAME: settings.name },
        environment: environment(refs, sizing),
      },
    ],
  };
}

/** What the one-off derivatives task adds: a role that may write under the derivative prefix (deploy/README.md). */
export interface DerivativeReferences {
  taskRoleArn: string;
}

export const DERIVATIVE_PLACEHOLDERS: DerivativeReferences = {
  taskRoleArn: '${DERIVATIVE_TASK_ROLE_ARN}',
};

/**
 * A one-off task (`aws ecs run-task`) that publishes the fleet's derivatives of the image
 * prefix ahead of traffic: `iiif-elastic pyramid s3://bucket/prefix --to-derivatives`. The
 * service's container (image, volumes, limits, environment, the derivative prefix included), a
 * role of its own, and no ports, health check or metrics labels: it serves nothing.
 */
export function derivativesTaskDefinition(refs: References, derivatives: DerivativeReferences, sizing: TaskSizing) {
  const server = taskDefinition(refs, sizing);
  // eslint-disable-next-line @typescript-eslint/no-unused-vars -- left out: the task serves nothing
  const { portMappings, healthCheck, dockerLabels, ...container } = server.containerDefinitions[0]!;
  return {
    ...server,
    family: `${settings.name}-derivatives`,
    taskRoleArn: derivatives.taskRoleArn,
    containerDefinitions: [
      {
        ...container,
        name: `${settings.container.name}-derivatives`,
        command: ['node', 'dist/src/cli.js', 'pyramid', `s3://${refs.bucket}/${refs.bucketPrefix}`, '--to-derivatives'],
      },
    ],
  };
}

/**
 * The service without a task count: the stack leaves the count to service auto scaling (a
 * stack update must not reset it); `create-service` starts at the minimum.
 */
export function serviceDefinition(refs: References) {
  return {
    cluster: refs.cluster,
    serviceName: settings.name,
    // The family: ECS takes its latest ACTIVE revision.
    taskDefinition: settings.name,
    schedulingStrategy: 'REPLICA',
    loadBalancers: [{ targetGroupArn: refs.targetGroupArn, containerName: settings.container.name, containerPort: settings.container.port }],
    healthCheckGracePeriodSeconds: settings.service.healthCheckGracePeriodSeconds,
    capacityProviderStrategy: [{ capacityProvider: refs.capacityProvider, weight: 1, base: 0 }],
    deploymentConfiguration: {
      minimumHealthyPercent: settings.service.minimumHealthyPercent,
      maximumPercent: settings.service.maximumPercent,
      deploymentCircuitBreaker: { enable: true, rollback: true },
      // A rollout that raises the 5xx rate or p99 latency is rolled back too, not only one whose tasks fail.
      alarms: { alarmNames: refs.alarmNames, enable: true, rollback: true },
    },
    // Across availability zones first, then fill hosts by memory so idle hosts can be scaled in.
    placementStrategy: [
      { type: 'spread', field: 'attribute:ecs.availability-zone' },
      { type: 'binpack', field: 'memory' },
    ],
    enableECSManagedTags: true,
    propagateTags: 'SERVICE',
  };
}

/** What `aws ecs create-service --cli-input-json` takes. */
export function serviceCliInput(refs: References) {
  return { ...serviceDefinition(refs), desiredCount: settings.service.minTasks };
}
