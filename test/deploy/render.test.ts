import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { ARTIFACTS, render } from '../../deploy/src/render.js';
import { drain, settings } from '../../deploy/src/settings.js';
import { loadConfig } from '../../src/config.js';
import { projectRoot } from '../../src/paths.js';
import { capacityFile, measuredCapacity } from './fixtures.js';

type Json = Record<string, unknown>;
const capacity = measuredCapacity();
let task: Json & { containerDefinitions: Json[] };
let service: Json;
let templateJson: Json;
let template: Template;

beforeAll(async () => {
  const out = await mkdtemp(join(tmpdir(), 'iiif-render-'));
  await render(await capacityFile(capacity), out);
  const read = async (relative: string) => JSON.parse(await readFile(join(out, relative), 'utf8'));
  [task, service, templateJson] = await Promise.all([read(ARTIFACTS.taskDefinition), read(ARTIFACTS.service), read(ARTIFACTS.template)]);
  // CDK's own assertion library over the rendered file, not over a second synthesis.
  template = Template.fromJSON(templateJson);
});

const container = () => task.containerDefinitions[0]! as Json & { portMappings: Json[]; healthCheck: { command: string[] } };
const resources = (type: string) => Object.values(templateJson.Resources as Record<string, { Type: string; Properties: Json }>).filter((r) => r.Type === type);
const onlyResource = (type: string) => {
  const found = resources(type);
  expect(found).toHaveLength(1);
  return found[0]!.Properties;
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

describe('ECS task definition', () => {
  it('runs one container per task on a dynamic host port with bridge networking', () => {
    expect(task.networkMode).toBe('bridge');
    expect(container().portMappings).toEqual([{ containerPort: 3000, hostPort: 0, protocol: 'tcp' }]);
  });

  it('checks /health, reaps zombies, drains before SIGKILL, raises nofile, has a read-only root and a cache volume', () => {
    const c = container();
    expect(c.healthCheck.command.join(' ')).toContain('http://127.0.0.1:3000/health');
    expect(c.linuxParameters).toEqual({ initProcessEnabled: true });
    expect(c.stopTimeout).toBeGreaterThanOrEqual((drain.delay.ms + drain.timeout.ms) / 1000);
    expect(c.stopTimeout).toBeLessThanOrEqual(120);
    expect(c.ulimits).toEqual([{ name: 'nofile', softLimit: 65_536, hardLimit: 65_536 }]);
    expect(c.readonlyRootFilesystem).toBe(true);
    expect(c.mountPoints).toContainEqual({ sourceVolume: 'cache', containerPath: '/cache', readOnly: false });
    expect(c.logConfiguration).toMatchObject({ logDriver: 'awslogs', options: { mode: 'non-blocking' } });
  });

  it('sizes memory and CPU from the capacity file: reservation from peak RSS, below the hard limit', () => {
    const c = container();
    expect(c.memoryReservation).toBe(Math.ceil(capacity.peakRssMiBAtSustainable * settings.memoryMarginFactor));
    expect(c.memory).toBe(capacity.container.memoryLimitMiB);
    expect(c.memoryReservation as number).toBeLessThan(c.memory as number);
    expect(c.cpu).toBe(capacity.container.cpus * 1024);
  });

  it('configures S3, the disk caches on the volume and the drain through the environment', () => {
    const env = Object.fromEntries((container().environment as Array<{ name: string; value: string }>).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      IIIF_SOURCE: 's3',
      IIIF_S3_BUCKET: '${IMAGE_BUCKET}',
      IIIF_CACHE_DIR: '/cache/source',
      IIIF_PYRAMID_DIR: '/cache/pyramids',
      // One core measured: the task gets the same lane and thread pool as the capacity run.
      IIIF_RENDER_CONCURRENCY: '2',
      UV_THREADPOOL_SIZE: '7',
      [drain.delay.variable]: String(drain.delay.ms),
      [drain.timeout.variable]: String(drain.timeout.ms),
    });
    expect(container().image).toBe('${IMAGE}');
  });

  it('gives the server an environment its own configuration reader accepts', () => {
    const env = Object.fromEntries(
      (container().environment as Array<{ name: string; value: string }>).map((e) => [e.name, e.value.replace('${IMAGE_BUCKET}', 'images').replace('${IMAGE_PREFIX}', 'scans/')]),
    );
    const config = loadConfig(env);
    expect(config.source).toBe('s3');
    expect(config.s3).toMatchObject({ bucket: 'images', prefix: 'scans/' });
    expect(config.cache).toEqual({ dir: '/cache/source', maxBytes: settings.container.sourceCacheBytes });
    expect(config.renderConcurrency).toBe(2);
    expect(config.port).toBe(settings.container.port);
  });

  it('is the same task definition the stack registers, key for key', () => {
    expect(keyPaths(onlyResource('AWS::ECS::TaskDefinition'))).toEqual(keyPaths(task));
  });
});

describe('ECS service', () => {
  it('rolls out with zero downtime and rolls back a failing deployment', () => {
    expect(service.deploymentConfiguration).toEqual({ minimumHealthyPercent: 100, maximumPercent: 200, deploymentCircuitBreaker: { enable: true, rollback: true } });
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
    expect(keyPaths(onlyResource('AWS::ECS::Service'))).toEqual(cli);
  });
});

describe('CloudFormation stack (CDK assertions)', () => {
  it('health-checks /health every 5 s, healthy after 2, drains as long as the container, least outstanding requests', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      HealthCheckPath: '/health',
      HealthCheckIntervalSeconds: 5,
      HealthyThresholdCount: 2,
      TargetType: 'instance',
      TargetGroupAttributes: Match.arrayWith([
        { Key: 'deregistration_delay.timeout_seconds', Value: String(drain.delay.ms / 1000) },
        { Key: 'load_balancing.algorithm.type', Value: 'least_outstanding_requests' },
      ]),
    });
  });

  it('scales on requests per target at R_max × 60 × headroom, with a CPU guard', () => {
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        TargetValue: Math.floor(capacity.sustainableRequestsPerSecond * 60 * capacity.headroom),
        PredefinedMetricSpecification: Match.objectLike({ PredefinedMetricType: 'ALBRequestCountPerTarget' }),
      }),
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        TargetValue: Math.round((capacity.coresAtSustainable / capacity.container.cpus) * 100 * capacity.headroom),
        PredefinedMetricSpecification: { PredefinedMetricType: 'ECSServiceAverageCPUUtilization' },
      }),
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: { Ref: 'MinTasks' }, MaxCapacity: { Ref: 'MaxTasks' } });
  });

  it('opens the hosts ephemeral ports only to the load balancer security group', () => {
    const ingress = onlyResource('AWS::EC2::SecurityGroupIngress');
    expect(ingress).toEqual({
      GroupId: { 'Fn::GetAtt': ['HostSecurityGroup', 'GroupId'] },
      IpProtocol: 'tcp',
      FromPort: 32_768,
      ToPort: 65_535,
      SourceSecurityGroupId: { 'Fn::GetAtt': ['AlbSecurityGroup', 'GroupId'] },
      Description: expect.any(String),
    });
    const hostGroup = (templateJson.Resources as Record<string, { Properties: Json }>).HostSecurityGroup!.Properties;
    expect(hostGroup.SecurityGroupIngress).toBeUndefined();
  });

  it('puts the load balancer in the public subnets and the hosts in their own', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', { Subnets: { Ref: 'PublicSubnetIds' } });
    template.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', { VPCZoneIdentifier: { Ref: 'HostSubnetIds' } });
  });

  it('scales hosts with a managed capacity provider kept below 100 % full', () => {
    const provider = onlyResource('AWS::ECS::CapacityProvider') as { AutoScalingGroupProvider: { ManagedScaling: { Status: string; TargetCapacity: number } } };
    expect(provider.AutoScalingGroupProvider.ManagedScaling.Status).toBe('ENABLED');
    expect(provider.AutoScalingGroupProvider.ManagedScaling.TargetCapacity).toBeLessThan(100);
  });

  it('takes the image tag as a parameter that refuses "latest"', () => {
    template.hasParameter('ImageTag', { Type: 'String', AllowedPattern: '^[0-9a-f]{7,40}$' });
    expect(new RegExp((templateJson.Parameters as Json & { ImageTag: { AllowedPattern: string } }).ImageTag.AllowedPattern).test('latest')).toBe(false);
  });

  it('grants no wildcard IAM action, and the task only reads the image bucket', () => {
    const roles = resources('AWS::IAM::Role') as unknown as Array<{ Properties: { Policies: Array<{ PolicyDocument: { Statement: Array<{ Action: string[]; Resource: unknown[] }> } }> } }>;
    expect(roles).toHaveLength(3);
    const actions = roles.flatMap((r) => r.Properties.Policies.flatMap((p) => p.PolicyDocument.Statement.flatMap((s) => s.Action)));
    expect(actions.length).toBeGreaterThan(5);
    for (const action of actions) expect(action).not.toContain('*');
    const taskRole = (templateJson.Resources as Record<string, (typeof roles)[number]>).TaskRole!;
    const statements = taskRole.Properties.Policies.flatMap((p) => p.PolicyDocument.Statement);
    expect(statements.flatMap((s) => s.Action).sort()).toEqual(['s3:GetObject', 's3:ListBucket']);
    for (const statement of statements) expect(JSON.stringify(statement.Resource)).toContain('"Ref":"ImageBucket"');
  });

  it('records which measurement the thresholds came from', () => {
    expect(templateJson.Metadata).toEqual({
      Capacity: { measured: capacity.date, machine: capacity.machine, sloP99Ms: 200, headroom: 0.7, sustainableRequestsPerSecond: 150 },
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
  });

  it('exits 1 with one line when the measured memory cannot fit the limit', async () => {
    const result = await renderProcess(await capacityFile(measuredCapacity({ peakRssMiBAtSustainable: 2000 })));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^deploy:render: memoryReservation 2500 MiB [^\n]*not below the hard limit 2048 MiB[^\n]*\n$/);
  });
});
