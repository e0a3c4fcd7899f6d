import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { ARTIFACTS, render } from '../../deploy/src/render.js';
import { settings } from '../../deploy/src/settings.js';
import { deriveSizing } from '../../deploy/src/sizing.js';
import { stopTimings } from '../../deploy/src/timings.js';
import { loadConfig } from '../../src/config.js';
import { projectRoot } from '../../src/paths.js';
import { capacityFile, measuredCapacity } from './fixtures.js';

type Json = Record<string, unknown>;
interface Resource {
  Type: string;
  Properties: Json;
  Condition?: string;
  DependsOn?: string[];
  DeletionPolicy?: string;
}
const capacity = measuredCapacity();
const sizing = deriveSizing(capacity);
const timings = stopTimings();
let task: Json & { containerDefinitions: Json[] };
let service: Json;
let derivativesTask: Json & { containerDefinitions: Json[] };
let templateJson: Json & { Resources: Record<string, Resource>; Parameters: Record<string, Json>; Mappings: Record<string, Record<string, Json>>; Conditions: Record<string, unknown> };
let template: Template;

// Rendering synthesizes a CDK app: seconds when idle, far more on a busy machine. No test here
// depends on how long that takes.
beforeAll(async () => {
  const out = await mkdtemp(join(tmpdir(), 'iiif-render-'));
  await render(await capacityFile(capacity), out);
  const read = async (relative: string) => JSON.parse(await readFile(join(out, relative), 'utf8'));
  [task, service, templateJson, derivativesTask] = await Promise.all([
    read(ARTIFACTS.taskDefinition),
    read(ARTIFACTS.service),
    read(ARTIFACTS.template),
    read(ARTIFACTS.derivativesTask),
  ]);
  // CDK's own assertion library over the rendered file, not over a second synthesis.
  template = Template.fromJSON(templateJson);
}, 10 * 60_000);

const container = () => task.containerDefinitions[0]! as Json & { portMappings: Json[]; healthCheck: { command: string[] } };
const environment = (): Record<string, string> => Object.fromEntries((container().environment as Array<{ name: string; value: string }>).map((e) => [e.name, e.value]));
const resources = (type: string) => Object.entries(templateJson.Resources).filter(([, r]) => r.Type === type);
const onlyResource = (type: string): Resource => {
  const found = resources(type);
  expect(found).toHaveLength(1);
  return found[0]![1];
};

/** Every key path of an object, lower-cased, not descending into CloudFormation intrinsics or log options. */
function keyPaths(value: unknown, prefix = ''): Set<string> {
  const paths = new Set<string>();
  if (Array.isArray(value)) for (const item of value) for (const path of keyPaths(item, `${prefix}[]`)) paths.add(path);
  else if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value);
    if (entries.length === 1 && (entries[0]![0] === 'Ref' || entries[0]![0].startsWith('Fn::'))) return paths;
    for (const [key, inner] of entries) {
      const path = `${prefix}.${key.toLowerCase()}`;
      paths.add(path);
      if (key.toLowerCase() !== 'options') for (const innerPath of keyPaths(inner, path)) paths.add(innerPath);
    }
  }
  return paths;
}

describe('one-off derivatives task definition', () => {
  const one = () => derivativesTask.containerDefinitions[0]! as Json & { command: string[]; environment: Array<{ name: string; value: string }> };

  it('runs the pyramid command into the derivative store over the image prefix, with its own role', () => {
    expect(derivativesTask.family).toBe('iiif-elastic-derivatives');
    expect(derivativesTask.taskRoleArn).toBe('${DERIVATIVE_TASK_ROLE_ARN}');
    expect(derivativesTask.executionRoleArn).toBe(task.executionRoleArn);
    expect(one().command).toEqual(['node', 'dist/src/cli.js', 'pyramid', 's3://${IMAGE_BUCKET}/${IMAGE_PREFIX}', '--to-derivatives']);
    expect(one().image).toBe('${IMAGE}');
  });

  it('serves nothing: no ports, health check or metrics labels; the service\'s volumes, limits and read-only root', () => {
    expect(one()).not.toHaveProperty('portMappings');
    expect(one()).not.toHaveProperty('healthCheck');
    expect(one()).not.toHaveProperty('dockerLabels');
    expect(one().mountPoints).toEqual(container().mountPoints);
    expect(derivativesTask.volumes).toEqual(task.volumes);
    expect([derivativesTask.cpu, derivativesTask.memory, one().readonlyRootFilesystem]).toEqual([task.cpu, task.memory, true]);
  });

  it('gives the command an environment its configuration reader accepts, with the derivative store set', () => {
    const fill = (value: string) =>
      value.replace('${IMAGE_BUCKET}', 'images').replace('${IMAGE_PREFIX}', 'scans/').replace('${AWS_REGION}', 'eu-west-1').replace('${DERIVATIVE_PREFIX}', 'derivatives/');
    const config = loadConfig(Object.fromEntries(one().environment.map(({ name, value }) => [name, fill(value)])));
    expect(config.derivatives).toMatchObject({ bucket: 'images', prefix: 'derivatives/' });
    expect(config.pyramids.thresholdPixels).toBeGreaterThan(0);
  });
});

describe('ECS task definition', () => {
  it('runs one container per task on dynamic host ports with bridge networking: the public port and the metrics port', () => {
    expect(task.networkMode).toBe('bridge');
    expect(container().portMappings).toEqual([
      { containerPort: 3000, hostPort: 0, protocol: 'tcp' },
      { containerPort: 9100, hostPort: 0, protocol: 'tcp' },
    ]);
    expect(container().dockerLabels).toEqual({ ECS_PROMETHEUS_EXPORTER_PORT: '9100', ECS_PROMETHEUS_JOB_NAME: 'iiif-elastic' });
  });

  it('checks /health, reaps zombies, raises nofile, has a read-only root, and mounts the cache volume on the image\'s own cache folder', () => {
    const c = container();
    expect(c.healthCheck.command.join(' ')).toContain('http://127.0.0.1:3000/health');
    expect(c.linuxParameters).toEqual({ initProcessEnabled: true });
    expect(c.ulimits).toEqual([{ name: 'nofile', softLimit: 65_536, hardLimit: 65_536 }]);
    expect(c.readonlyRootFilesystem).toBe(true);
    // docker/Dockerfile: VOLUME /var/cache/iiif, owned by node (test/docker/ecs-task.system.test.ts runs it).
    expect(c.mountPoints).toContainEqual({ sourceVolume: 'cache', containerPath: '/var/cache/iiif', readOnly: false });
    expect(environment()).toMatchObject({ IIIF_CACHE_DIR: '/var/cache/iiif/sources', IIIF_PYRAMID_DIR: '/var/cache/iiif/pyramids' });
    expect(c.logConfiguration).toMatchObject({ logDriver: 'awslogs', options: { mode: 'non-blocking' } });
  });

  it('caps CPU and memory at the task level, as the capacity run was capped; reserves memory from the measured peak', () => {
    const c = container();
    // Task-level cpu is a hard limit on EC2; the container's alone would only be a share.
    expect(task.cpu).toBe(String(capacity.container.cpus * 1024));
    expect(task.memory).toBe(String(capacity.container.memoryLimitMiB));
    expect(c.cpu).toBe(capacity.container.cpus * 1024);
    expect(c.memory).toBe(capacity.container.memoryLimitMiB);
    expect(c.memoryReservation).toBe(Math.ceil(capacity.peakRssMiBAtSustainable * settings.memoryMarginFactor));
    expect(c.memoryReservation as number).toBeLessThan(c.memory as number);
  });

  it('sets the region, S3, the caches, metrics on their own port and the stop timings through the environment', () => {
    expect(environment()).toMatchObject({
      AWS_REGION: '${AWS_REGION}',
      IIIF_SOURCE: 's3',
      IIIF_S3_BUCKET: '${IMAGE_BUCKET}',
      IIIF_METRICS_PORT: '9100',
      // One core measured: the task gets the same lane and thread pool as the capacity run.
      IIIF_RENDER_CONCURRENCY: '2',
      UV_THREADPOOL_SIZE: '7',
      IIIF_ACCESS_LOG: 'false',
      ...timings.environment,
    });
    expect(environment()).not.toHaveProperty('IIIF_ADMIN_TOKEN');
    expect(container().image).toBe('${IMAGE}');
  });

  it('gives the server an environment its own configuration reader accepts', () => {
    const filled = (derivativePrefix: string) =>
      Object.fromEntries(
        Object.entries(environment()).map(([name, value]) => [
          name,
          value.replace('${IMAGE_BUCKET}', 'images').replace('${IMAGE_PREFIX}', 'scans/').replace('${AWS_REGION}', 'eu-west-1').replace('${DERIVATIVE_PREFIX}', derivativePrefix),
        ]),
      );
    const config = loadConfig(filled('derivatives/'));
    // The fleet's derivative store by default, in the image bucket; an empty prefix switches it off.
    expect(config.derivatives).toMatchObject({ bucket: 'images', prefix: 'derivatives/' });
    expect(loadConfig(filled('')).derivatives).toBeUndefined();
    expect(config.source).toBe('s3');
    expect(config.s3).toMatchObject({ bucket: 'images', prefix: 'scans/' });
    expect(config.cache).toEqual({ dir: '/var/cache/iiif/sources', maxBytes: settings.container.sourceCacheBytes });
    expect(config.renderConcurrency).toBe(2);
    expect(config.port).toBe(settings.container.port);
    expect(config.metricsPort).toBe(settings.container.metricsPort);
    expect({ delay: config.drainDelayMs, timeout: config.drainTimeoutMs }).toEqual({ delay: timings.drainDelayMs, timeout: timings.drainTimeoutMs });
    expect(config.s3!.deadlineMs).toBe(settings.server.s3DeadlineMs);
  });

  it('is the same task definition the stack registers, key for key', () => {
    expect(keyPaths(templateJson.Resources.TaskDefinition!.Properties)).toEqual(keyPaths(task));
  });
});

describe('stop timings, chosen together', () => {
  it('lets the longest request finish: deregistration delay, then the drain, then SIGKILL', () => {
    const { queueTimeoutMs, s3DeadlineMs } = settings.server;
    // The ALB waits for requests in flight before ECS sends SIGTERM: a cold S3 fetch after a queue wait fits.
    expect(timings.deregistrationDelaySeconds * 1000).toBeGreaterThanOrEqual(queueTimeoutMs + s3DeadlineMs);
    expect(timings.drainTimeoutMs).toBeGreaterThan(timings.drainDelayMs + timings.longestRequestSeconds * 1000 - 1);
    expect(container().stopTimeout).toBe(timings.stopTimeoutSeconds);
    expect(timings.stopTimeoutSeconds * 1000).toBeGreaterThan(timings.drainTimeoutMs);
    expect(timings.stopTimeoutSeconds).toBeLessThanOrEqual(120);
  });

  it('keeps the ALB idle timeout below the server keep-alive (72 s)', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      LoadBalancerAttributes: Match.arrayWith([{ Key: 'idle_timeout.timeout_seconds', Value: '60' }]),
    });
  });
});

describe('ECS service', () => {
  it('rolls out with zero downtime and rolls back on failing tasks or on either deployment alarm', () => {
    expect(service.deploymentConfiguration).toEqual({
      minimumHealthyPercent: 100,
      maximumPercent: 200,
      deploymentCircuitBreaker: { enable: true, rollback: true },
      alarms: { alarmNames: ['${ERROR_RATE_ALARM}', '${LATENCY_ALARM}'], enable: true, rollback: true },
    });
    expect(service.healthCheckGracePeriodSeconds).toBeGreaterThanOrEqual(settings.container.healthStartPeriodSeconds);
    expect(service.loadBalancers).toEqual([{ targetGroupArn: '${TARGET_GROUP_ARN}', containerName: 'iiif', containerPort: 3000 }]);
  });

  it('spreads across availability zones, then binpacks memory, on the capacity provider', () => {
    expect(service.placementStrategy).toEqual([
      { type: 'spread', field: 'attribute:ecs.availability-zone' },
      { type: 'binpack', field: 'memory' },
    ]);
    expect(service.capacityProviderStrategy).toEqual([{ capacityProvider: '${CAPACITY_PROVIDER}', weight: 1, base: 0 }]);
  });

  it('is the service the stack creates, key for key (CloudFormation leaves the count to auto scaling)', () => {
    const cli = new Set([...keyPaths(service)].map((path) => path.replace('.placementstrategy', '.placementstrategies')));
    cli.delete('.desiredcount');
    expect(keyPaths(onlyResource('AWS::ECS::Service').Properties)).toEqual(cli);
  });
});

describe('CloudFormation stack (CDK assertions)', () => {
  it('health-checks tolerantly, drains for the longest request, ramps new targets up slowly', () => {
    const targetGroup = onlyResource('AWS::ElasticLoadBalancingV2::TargetGroup').Properties;
    expect(targetGroup).toMatchObject({ HealthCheckPath: '/health', HealthCheckIntervalSeconds: 10, HealthCheckTimeoutSeconds: 6, HealthyThresholdCount: 2, UnhealthyThresholdCount: 3, Port: 3000 });
    // A live task is declared unhealthy only after 30 s of failed checks, each allowed 6 s.
    expect((targetGroup.HealthCheckIntervalSeconds as number) * (targetGroup.UnhealthyThresholdCount as number)).toBeGreaterThanOrEqual(30);
    expect(Object.fromEntries((targetGroup.TargetGroupAttributes as Array<{ Key: string; Value: string }>).map((a) => [a.Key, a.Value]))).toEqual({
      'deregistration_delay.timeout_seconds': String(timings.deregistrationDelaySeconds),
      'slow_start.duration_seconds': '60',
      // The ALB refuses slow start together with least outstanding requests.
      'load_balancing.algorithm.type': 'round_robin',
    });
  });

  it('scales on requests per target at R_max × 60 × headroom, and on CPU read off the measured curve at that rate', () => {
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        TargetValue: Math.floor(capacity.sustainableRequestsPerSecond * 60 * capacity.headroom),
        PredefinedMetricSpecification: Match.objectLike({ PredefinedMetricType: 'ALBRequestCountPerTarget' }),
      }),
    });
    // fixtures.ts: 0.72 cores at 105 req/s, not the 0.63 of a straight line through R_max.
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({ TargetValue: 72, PredefinedMetricSpecification: { PredefinedMetricType: 'ECSServiceAverageCPUUtilization' } }),
    });
  });

  it('leaves the scalable target to the service-linked role, which need not exist yet', () => {
    const scalable = onlyResource('AWS::ApplicationAutoScaling::ScalableTarget').Properties;
    expect(scalable).not.toHaveProperty('RoleARN');
    expect(scalable).toMatchObject({ MinCapacity: { Ref: 'MinTasks' }, MaxCapacity: { Ref: 'MaxTasks' } });
  });

  it('sizes each host type\'s root volume for every container that fits on it, caches full', () => {
    const mapping = templateJson.Mappings.HostTypes!;
    const allowed = templateJson.Parameters.InstanceType!.AllowedValues as string[];
    expect(Object.keys(mapping).sort()).toEqual([...allowed].sort());
    expect(allowed).toContain(settings.hosts.instanceType);
    const cacheGiB = (settings.container.sourceCacheBytes + settings.container.pyramidCacheBytes) / 1024 ** 3;
    for (const type of allowed) {
      const { VolumeGiB, TasksPerHost } = mapping[type] as { VolumeGiB: number; TasksPerHost: number };
      const host = settings.hostTypes[type as keyof typeof settings.hostTypes];
      // CPU units are a hard reservation: no more containers than that fit.
      expect(TasksPerHost).toBeLessThanOrEqual(Math.floor((host.vcpus * 1024) / sizing.cpuUnits));
      expect(VolumeGiB).toBeGreaterThanOrEqual(settings.hosts.baseVolumeGiB + TasksPerHost * cacheGiB);
    }
    expect(mapping['c7i.2xlarge']).toEqual({ TasksPerHost: 8, VolumeGiB: 30 + 8 * (cacheGiB + 1) });
    const launchTemplate = onlyResource('AWS::EC2::LaunchTemplate').Properties as { LaunchTemplateData: { BlockDeviceMappings: Json[] } };
    expect(launchTemplate.LaunchTemplateData.BlockDeviceMappings).toEqual([
      { DeviceName: '/dev/xvda', Ebs: { VolumeSize: { 'Fn::FindInMap': ['HostTypes', { Ref: 'InstanceType' }, 'VolumeGiB'] }, VolumeType: 'gp3', Encrypted: true, DeleteOnTermination: true } },
    ]);
  });

  it('keeps at least one host in every availability zone of the host subnets', () => {
    expect(templateJson.Transform).toBe('AWS::LanguageExtensions');
    const hosts = onlyResource('AWS::AutoScaling::AutoScalingGroup').Properties;
    expect(hosts.MinSize).toEqual({ 'Fn::Length': { Ref: 'HostSubnetIds' } });
    expect(hosts.VPCZoneIdentifier).toEqual({ Ref: 'HostSubnetIds' });
    expect(templateJson.Parameters).not.toHaveProperty('MinHosts');
    expect(templateJson.Parameters.MinTasks!.MinValue).toBeGreaterThanOrEqual(2);
  });

  it('wires a 5xx-rate alarm and a p99 latency alarm into the deployment circuit breaker', () => {
    const alarms = Object.fromEntries(resources('AWS::CloudWatch::Alarm'));
    expect(Object.keys(alarms).sort()).toEqual(['ErrorRateAlarm', 'LatencyAlarm']);
    const errors = alarms.ErrorRateAlarm!.Properties as { Threshold: number; Metrics: Array<{ Id: string; Expression?: string; MetricStat?: { Metric: { MetricName: string } } }> };
    expect(errors.Threshold).toBe(settings.alarms.errorRatePercent);
    expect(errors.Metrics.find((m) => m.Expression)?.Expression).toBe('100 * (FILL(target5xx, 0) + FILL(elb5xx, 0)) / requests');
    expect(errors.Metrics.flatMap((m) => m.MetricStat?.Metric.MetricName ?? []).sort()).toEqual(['HTTPCode_ELB_5XX_Count', 'HTTPCode_Target_5XX_Count', 'RequestCount']);
    // 2 × max(SLO 200 ms, p99 of every request at R_max 150 ms).
    expect(alarms.LatencyAlarm!.Properties).toMatchObject({ MetricName: 'TargetResponseTime', ExtendedStatistic: 'p99', Threshold: 0.4, TreatMissingData: 'notBreaching' });
    const service = onlyResource('AWS::ECS::Service').Properties as { DeploymentConfiguration: Json };
    expect(service.DeploymentConfiguration.Alarms).toEqual({ AlarmNames: [{ Ref: 'ErrorRateAlarm' }, { Ref: 'LatencyAlarm' }], Enable: true, Rollback: true });
  });

  it('writes ALB access logs to a bucket of its own that the load balancer may write and nobody may read publicly', () => {
    const balancer = onlyResource('AWS::ElasticLoadBalancingV2::LoadBalancer');
    expect(balancer.Properties.LoadBalancerAttributes).toEqual(
      expect.arrayContaining([
        { Key: 'access_logs.s3.enabled', Value: 'true' },
        { Key: 'access_logs.s3.bucket', Value: { Ref: 'AccessLogBucket' } },
        { Key: 'access_logs.s3.prefix', Value: 'alb' },
      ]),
    );
    expect(balancer.DependsOn).toContain('AccessLogBucketPolicy');
    const bucket = onlyResource('AWS::S3::Bucket');
    expect(bucket.DeletionPolicy).toBe('Retain');
    expect(bucket.Properties).toMatchObject({
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
    });
    const statement = (onlyResource('AWS::S3::BucketPolicy').Properties.PolicyDocument as { Statement: Json[] }).Statement[0]!;
    expect(statement.Principal).toEqual({
      'Fn::If': [
        'RegionHasElbAccount',
        { AWS: { 'Fn::Sub': ['arn:${AWS::Partition}:iam::${Account}:root', { Account: { 'Fn::FindInMap': ['ElbLogDelivery', { Ref: 'AWS::Region' }, 'Account'] } }] } },
        { Service: 'logdelivery.elasticloadbalancing.amazonaws.com' },
      ],
    });
    // AWS's account for ELB log delivery in us-east-1; newer regions use the service principal.
    expect(templateJson.Mappings.ElbLogDelivery!['us-east-1']).toEqual({ Account: '127311923021' });
    expect(templateJson.Mappings.ElbLogDelivery!['il-central-1']).toEqual({ Account: 'none' });
  });

  it('creates the image repository: immutable tags, scan on push, a lifecycle, kept when the stack goes', () => {
    const repository = onlyResource('AWS::ECR::Repository');
    expect(repository.DeletionPolicy).toBe('Retain');
    expect(repository.Properties).toMatchObject({ RepositoryName: { Ref: 'ImageRepository' }, ImageTagMutability: 'IMMUTABLE', ImageScanningConfiguration: { ScanOnPush: true } });
    const rules = JSON.parse((repository.Properties.LifecyclePolicy as { LifecyclePolicyText: string }).LifecyclePolicyText).rules as Array<{ selection: Json }>;
    expect(rules.map((rule) => rule.selection)).toEqual([
      { tagStatus: 'untagged', countType: 'sinceImagePushed', countUnit: 'days', countNumber: 7 },
      { tagStatus: 'any', countType: 'imageCountMoreThan', countNumber: 50 },
    ]);
    const [taskDefinition] = templateJson.Resources.TaskDefinition!.Properties.ContainerDefinitions as Json[];
    expect(taskDefinition!.Image).toEqual({ 'Fn::Sub': ['${Uri}:${Tag}', { Uri: { 'Fn::GetAtt': ['Repository', 'RepositoryUri'] }, Tag: { Ref: 'ImageTag' } }] });
  });

  it('creates the service only once an image tag is given, so a first deployment makes the repository to push to', () => {
    template.hasParameter('ImageTag', { Type: 'String', Default: '', AllowedPattern: '^([0-9a-f]{7,40})?$' });
    const pattern = new RegExp(templateJson.Parameters.ImageTag!.AllowedPattern as string);
    expect(['', 'a1b2c3d', 'latest'].map((tag) => pattern.test(tag))).toEqual([true, true, false]);
    const conditional = Object.entries(templateJson.Resources).filter(([, r]) => r.Condition === 'HasImage').map(([name]) => name);
    expect(conditional.sort()).toEqual(['CpuScaling', 'RequestCountScaling', 'ScalableTarget', 'Service', 'TaskDefinition']);
  });

  it('opens the hosts\' ephemeral ports to the load balancer, and to the VPC for the metrics port; the ALB targets only the public port', () => {
    const ingress = Object.fromEntries(resources('AWS::EC2::SecurityGroupIngress').map(([name, r]) => [name, r.Properties]));
    expect(ingress).toEqual({
      HostIngressFromAlb: expect.objectContaining({ FromPort: 32_768, ToPort: 65_535, SourceSecurityGroupId: { 'Fn::GetAtt': ['AlbSecurityGroup', 'GroupId'] } }),
      HostIngressFromVpc: expect.objectContaining({ FromPort: 32_768, ToPort: 65_535, CidrIp: { Ref: 'VpcCidr' } }),
    });
    expect(templateJson.Resources.HostSecurityGroup!.Properties.SecurityGroupIngress).toBeUndefined();
    const service = onlyResource('AWS::ECS::Service').Properties as { LoadBalancers: Json[] };
    expect(service.LoadBalancers).toEqual([expect.objectContaining({ ContainerPort: 3000 })]);
  });

  it('puts the load balancer in the public subnets and the hosts in their own', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', { Subnets: { Ref: 'PublicSubnetIds' } });
    template.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', { VPCZoneIdentifier: { Ref: 'HostSubnetIds' } });
  });

  it('scales hosts with a managed capacity provider kept below 100 % full', () => {
    const provider = onlyResource('AWS::ECS::CapacityProvider').Properties as { AutoScalingGroupProvider: { ManagedScaling: { Status: string; TargetCapacity: number } } };
    expect(provider.AutoScalingGroupProvider.ManagedScaling.Status).toBe('ENABLED');
    expect(provider.AutoScalingGroupProvider.ManagedScaling.TargetCapacity).toBeLessThan(100);
  });

  it('grants no wildcard IAM action, pulls only from its own repository; the tasks read the sources and write only below the derivative prefix', () => {
    type Statement = { Action: string[]; Resource: unknown[] };
    type Policy = { PolicyName: string; PolicyDocument: { Statement: Statement[] } };
    type Role = { Condition?: string; Properties: { Policies: Array<Policy | { 'Fn::If': [string, Policy, unknown] }> } };
    const roles = Object.fromEntries(resources('AWS::IAM::Role')) as unknown as Record<string, Role>;
    expect(Object.keys(roles).sort()).toEqual(['DerivativesTaskRole', 'ExecutionRole', 'HostRole', 'TaskRole']);
    // A conditional policy counts as granted (its condition is checked below).
    const policies = (name: string) => roles[name]!.Properties.Policies.map((p) => ('Fn::If' in p ? p['Fn::If'][1] : p));
    const statements = (name: string) => policies(name).flatMap((p) => p.PolicyDocument.Statement);
    const actions = Object.keys(roles).flatMap((name) => statements(name).flatMap((s) => s.Action));
    expect(actions.length).toBeGreaterThan(5);
    for (const action of actions) expect(action).not.toContain('*');
    expect(statements('ExecutionRole').find((s) => s.Action.includes('ecr:BatchGetImage'))!.Resource).toEqual([{ 'Fn::GetAtt': ['Repository', 'Arn'] }]);
    const reads = ['s3:GetObject', 's3:ListBucket'];
    for (const name of ['TaskRole', 'DerivativesTaskRole']) {
      expect(statements(name).flatMap((s) => s.Action).sort()).toEqual(['s3:DeleteObject', 's3:GetObject', 's3:GetObject', 's3:ListBucket', 's3:ListBucket', 's3:PutObject']);
      for (const statement of statements(name)) {
        const resource = JSON.stringify(statement.Resource);
        expect(resource).toContain('"Ref":"ImageBucket"');
        // Every write or delete is scoped to the derivative prefix, never to the sources' prefix.
        if (statement.Action.some((action) => !reads.includes(action))) {
          expect(resource).toContain('"Ref":"DerivativePrefix"');
          expect(resource).not.toContain('"Ref":"ImagePrefix"');
        }
      }
    }
    // The sources are read, nothing more; listing is scoped to each prefix.
    const sourceStatements = statements('TaskRole').filter((s) => JSON.stringify(s).includes('"Ref":"ImagePrefix"'));
    expect(sourceStatements.flatMap((s) => s.Action).sort()).toEqual(reads);
    // An empty prefix would make the grant the whole bucket: without one, neither the write policy nor the one-off role exist.
    const [conditional] = roles.TaskRole!.Properties.Policies.filter((p) => 'Fn::If' in p) as Array<{ 'Fn::If': [string, Policy, unknown] }>;
    expect(conditional!['Fn::If'][0]).toBe('HasDerivatives');
    expect(conditional!['Fn::If'][2]).toEqual({ Ref: 'AWS::NoValue' });
    expect(roles.DerivativesTaskRole!.Condition).toBe('HasDerivatives');
    expect(templateJson.Conditions.HasDerivatives).toEqual({ 'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'DerivativePrefix' }, ''] }] });
  });

  it('uses the fleet derivative store by default: a DerivativePrefix parameter, empty to switch it off', () => {
    template.hasParameter('DerivativePrefix', { Type: 'String', Default: 'derivatives/' });
    const pattern = new RegExp(templateJson.Parameters.DerivativePrefix!.AllowedPattern as string);
    expect(['', 'derivatives/', 'iiif/derivatives/'].map((value) => pattern.test(value))).toEqual([true, true, true]);
    // No wildcard that would widen the write grant, no leading slash, and a folder (the grant ends at its "/").
    expect(['*', 'derivatives/*', 'derivatives', '/derivatives/', 'a*/'].map((value) => pattern.test(value))).toEqual([false, false, false, false, false]);
    const environment = (templateJson.Resources.TaskDefinition!.Properties.ContainerDefinitions as Array<{ Environment: Array<{ Name: string; Value: unknown }> }>)[0]!.Environment;
    expect(environment).toContainEqual({ Name: 'IIIF_DERIVATIVE_PREFIX', Value: { Ref: 'DerivativePrefix' } });
  });

  it('registers the one-off derivatives task with its own role, once there is an image and a derivative prefix', () => {
    const derivatives = templateJson.Resources.DerivativesTaskDefinition!;
    expect(derivatives.Condition).toBe('HasImageAndDerivatives');
    expect(derivatives.Properties.TaskRoleArn).toEqual({ 'Fn::GetAtt': ['DerivativesTaskRole', 'Arn'] });
    expect(keyPaths(derivatives.Properties)).toEqual(keyPaths(derivativesTask));
    expect(templateJson.Conditions.HasImageAndDerivatives).toEqual({ 'Fn::And': [{ Condition: 'HasImage' }, { Condition: 'HasDerivatives' }] });
  });

  it('records which measurement the thresholds came from', () => {
    expect(templateJson.Metadata).toEqual({
      Capacity: { measured: capacity.date, machine: capacity.machine, setup: capacity.setup, sloP99Ms: 200, headroom: 0.7, sustainableRequestsPerSecond: 150 },
    });
  });
});

describe('npm run deploy:render with bad input', () => {
  const RENDER = join(projectRoot(), 'dist', 'deploy', 'src', 'render.js');
  async function renderProcess(capacityPath: string) {
    const out = await mkdtemp(join(tmpdir(), 'iiif-render-'));
    const child = spawn(process.execPath, [RENDER, '--capacity', capacityPath, '--out', out]);
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const [code] = await once(child, 'exit');
    return { code, stderr };
  }

  it('exits 1 with one line when capacity.json is missing', async () => {
    const result = await renderProcess('/nonexistent/capacity.json');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^deploy:render: \/nonexistent\/capacity.json is missing: run `npm run capacity`[^\n]*\n$/);
  }, 120_000);

  it('exits 1 with one line when the measured memory cannot fit the limit', async () => {
    const result = await renderProcess(await capacityFile(measuredCapacity({ peakRssMiBAtSustainable: 2000 })));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^deploy:render: memoryReservation 2500 MiB [^\n]*not below the hard limit 2048 MiB[^\n]*\n$/);
  }, 120_000);
});
