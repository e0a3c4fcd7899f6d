/**
 * The ECS task and service definitions, built once from the settings and the sizing. The
 * shapes are the ECS API's (what `aws ecs register-task-definition --cli-input-json` and
 * `create-service --cli-input-json` take); the CloudFormation stack passes the same objects to
 * its L1 resources, whose property names are the same camelCase words, with its own references
 * in place of the placeholders.
 */
import { drain, settings } from './settings.js';
import type { Sizing } from './sizing.js';

/** What only the deployed stack knows: ARNs, names, the image reference. */
export interface References {
  /** Repository URI and tag, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/iiif-elastic:<git sha>. */
  image: string;
  executionRoleArn: string;
  taskRoleArn: string;
  bucket: string;
  bucketPrefix: string;
  logGroup: string;
  region: string;
  cluster: string;
  targetGroupArn: string;
  capacityProvider: string;
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
  logGroup: '${LOG_GROUP}',
  region: '${AWS_REGION}',
  cluster: '${CLUSTER}',
  targetGroupArn: '${TARGET_GROUP_ARN}',
  capacityProvider: '${CAPACITY_PROVIDER}',
};

const CACHE_VOLUME = 'cache';
const TMP_VOLUME = 'tmp';

/** The container's environment: the server's own variables (src/config.ts), set for ECS. */
function environment(refs: References, sizing: Sizing): Array<{ name: string; value: string }> {
  const { cacheMount, sourceCacheBytes, pyramidCacheBytes, port } = settings.container;
  const variables: Record<string, string | number | boolean> = {
    PORT: port,
    IIIF_SOURCE: 's3',
    IIIF_S3_BUCKET: refs.bucket,
    IIIF_S3_PREFIX: refs.bucketPrefix,
    IIIF_CACHE_DIR: `${cacheMount}/source`,
    IIIF_CACHE_MAX_BYTES: sourceCacheBytes,
    IIIF_PYRAMID_DIR: `${cacheMount}/pyramids`,
    IIIF_PYRAMID_CACHE_MAX_BYTES: pyramidCacheBytes,
    ...sizing.serverEnvironment,
    // The ALB sets X-Forwarded-Proto/Host and keeps the access logs.
    IIIF_TRUST_PROXY: true,
    IIIF_ACCESS_LOG: false,
    [drain.delay.variable]: drain.delay.ms,
    [drain.timeout.variable]: drain.timeout.ms,
  };
  return Object.entries(variables).map(([name, value]) => ({ name, value: String(value) }));
}

export function taskDefinition(refs: References, sizing: Sizing) {
  const { name, port, healthPath, healthStartPeriodSeconds, nofile, cacheMount, tmpMount } = settings.container;
  // The image has Node but maybe no curl: the health check asks with Node's own fetch.
  const probe = `fetch('http://127.0.0.1:${port}${healthPath}').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`;
  return {
    family: settings.name,
    networkMode: 'bridge',
    requiresCompatibilities: ['EC2'],
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
        portMappings: [{ containerPort: port, hostPort: 0, protocol: 'tcp' }],
        healthCheck: { command: ['CMD', 'node', '-e', probe], interval: 10, timeout: 5, retries: 3, startPeriod: healthStartPeriodSeconds },
        linuxParameters: { initProcessEnabled: true },
        stopTimeout: sizing.stopTimeoutSeconds,
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
        environment: environment(refs, sizing),
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
