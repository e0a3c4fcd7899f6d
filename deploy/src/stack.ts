/**
 * The whole stack as an AWS CDK app, synthesized offline into one CloudFormation template:
 * ALB → target group → many identical containers on an Auto Scaling group of ECS hosts → S3.
 * L1 resources throughout, so every property that matters is spelled out here and the template
 * needs no CDK bootstrap, no lookups and no account at synthesis time.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Aws, CfnDeletionPolicy, CfnOutput, CfnParameter, DefaultStackSynthesizer, Fn, Stack } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import type { Capacity } from './capacity.js';
import { serviceDefinition, taskDefinition } from './ecs.js';
import { settings } from './settings.js';
import type { Sizing } from './sizing.js';

interface Statement {
  actions: string[];
  resources: string[];
  condition?: Record<string, Record<string, string>>;
}

/** An IAM policy document; every action is named (tests refuse wildcards). */
function policy(statements: Statement[]) {
  return {
    Version: '2012-10-17',
    Statement: statements.map(({ actions, resources, condition }) => ({ Effect: 'Allow', Action: actions, Resource: resources, ...(condition ? { Condition: condition } : {}) })),
  };
}

function role(scope: Construct, id: string, service: string, statements: Statement[]): iam.CfnRole {
  return new iam.CfnRole(scope, id, {
    assumeRolePolicyDocument: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { Service: service }, Action: 'sts:AssumeRole' }] },
    policies: [{ policyName: 'least-privilege', policyDocument: policy(statements) }],
  });
}

export class IiifStack extends Stack {
  constructor(scope: Construct, id: string, sizing: Sizing, capacity: Capacity) {
    super(scope, id, {
      synthesizer: new DefaultStackSynthesizer({ generateBootstrapVersionRule: false }),
      description: `iiif-elastic on ECS behind an ALB; scaling thresholds from capacity measured ${capacity.date} on ${capacity.machine}`,
    });
    this.templateOptions.metadata = {
      Capacity: {
        measured: capacity.date,
        machine: capacity.machine,
        sloP99Ms: capacity.sloP99Ms,
        headroom: capacity.headroom,
        sustainableRequestsPerSecond: capacity.sustainableRequestsPerSecond,
      },
    };

    const parameter = (name: string, props: ConstructorParameters<typeof CfnParameter>[2]) => new CfnParameter(this, name, props);
    const vpcId = parameter('VpcId', { type: 'AWS::EC2::VPC::Id', description: 'VPC of the load balancer and the hosts' });
    const albSubnets = parameter('PublicSubnetIds', { type: 'List<AWS::EC2::Subnet::Id>', description: 'Public subnets in at least two availability zones, for the load balancer' });
    const hostSubnets = parameter('HostSubnetIds', {
      type: 'List<AWS::EC2::Subnet::Id>',
      description: 'Subnets for the hosts, in the same zones: private, with a NAT gateway or VPC endpoints for ECS, ECR, S3 and CloudWatch Logs',
    });
    const allowedCidr = parameter('AllowedCidr', { type: 'String', default: '0.0.0.0/0', description: 'Who may reach the load balancer' });
    const repository = parameter('ImageRepository', { type: 'String', default: settings.name, description: 'ECR repository name in this account and region' });
    const imageTag = parameter('ImageTag', {
      type: 'String',
      allowedPattern: '^[0-9a-f]{7,40}$',
      constraintDescription: 'a git commit SHA: tags are immutable, never latest',
      description: 'Image tag to run (the git SHA it was built from)',
    });
    const bucket = parameter('ImageBucket', { type: 'String', description: 'S3 bucket holding the source images (read only)' });
    const prefix = parameter('ImagePrefix', { type: 'String', default: '', description: 'Key prefix of the images in the bucket' });
    const instanceType = parameter('InstanceType', { type: 'String', default: settings.hosts.instanceType, description: 'Host instance type (measure capacity on this type)' });
    const ami = parameter('HostAmi', {
      type: 'AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>',
      default: '/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id',
      description: 'ECS-optimized AMI',
    });
    const minHosts = parameter('MinHosts', { type: 'Number', default: settings.hosts.min, minValue: 0 });
    const maxHosts = parameter('MaxHosts', { type: 'Number', default: settings.hosts.max, minValue: 1 });
    const minTasks = parameter('MinTasks', { type: 'Number', default: settings.service.minTasks, minValue: 1 });
    const maxTasks = parameter('MaxTasks', { type: 'Number', default: settings.service.maxTasks, minValue: 1 });

    const logGroup = new logs.CfnLogGroup(this, 'LogGroup', { retentionInDays: settings.logRetentionDays });
    // Logs outlive the stack: deleting or replacing it must not erase what happened.
    logGroup.cfnOptions.deletionPolicy = CfnDeletionPolicy.RETAIN;
    logGroup.cfnOptions.updateReplacePolicy = CfnDeletionPolicy.RETAIN;
    const cluster = new ecs.CfnCluster(this, 'Cluster', { clusterSettings: [{ name: 'containerInsights', value: 'enabled' }] });

    // Network: the ALB takes the public traffic; hosts accept only the ALB, on Docker's ephemeral range.
    const albGroup = new ec2.CfnSecurityGroup(this, 'AlbSecurityGroup', {
      groupDescription: 'iiif-elastic load balancer',
      vpcId: vpcId.valueAsString,
      securityGroupIngress: [{ ipProtocol: 'tcp', fromPort: 80, toPort: 80, cidrIp: allowedCidr.valueAsString }],
    });
    const hostGroup = new ec2.CfnSecurityGroup(this, 'HostSecurityGroup', { groupDescription: 'iiif-elastic ECS hosts', vpcId: vpcId.valueAsString });
    new ec2.CfnSecurityGroupIngress(this, 'HostIngressFromAlb', {
      groupId: hostGroup.attrGroupId,
      ipProtocol: 'tcp',
      fromPort: settings.hostPortRange.from,
      toPort: settings.hostPortRange.to,
      sourceSecurityGroupId: albGroup.attrGroupId,
      description: 'dynamic host ports (hostPort 0), from the load balancer only',
    });

    const loadBalancer = new elbv2.CfnLoadBalancer(this, 'LoadBalancer', {
      type: 'application',
      scheme: 'internet-facing',
      subnets: albSubnets.valueAsList,
      securityGroups: [albGroup.attrGroupId],
      loadBalancerAttributes: [{ key: 'idle_timeout.timeout_seconds', value: String(settings.albIdleTimeoutSeconds) }],
    });
    const tg = settings.targetGroup;
    const targetGroup = new elbv2.CfnTargetGroup(this, 'TargetGroup', {
      vpcId: vpcId.valueAsString,
      targetType: 'instance',
      protocol: 'HTTP',
      port: settings.container.port,
      healthCheckPath: settings.container.healthPath,
      healthCheckIntervalSeconds: tg.healthIntervalSeconds,
      healthCheckTimeoutSeconds: tg.healthTimeoutSeconds,
      healthyThresholdCount: tg.healthyThreshold,
      unhealthyThresholdCount: tg.unhealthyThreshold,
      matcher: { httpCode: '200' },
      targetGroupAttributes: [
        { key: 'deregistration_delay.timeout_seconds', value: String(sizing.deregistrationDelaySeconds) },
        // Tiles and large renders differ in cost: send each request to the least busy container.
        { key: 'load_balancing.algorithm.type', value: 'least_outstanding_requests' },
      ],
    });
    const listener = new elbv2.CfnListener(this, 'Listener', {
      loadBalancerArn: loadBalancer.ref,
      port: 80,
      protocol: 'HTTP',
      defaultActions: [{ type: 'forward', targetGroupArn: targetGroup.ref }],
    });

    // Hosts: the ECS agent's own calls only (image pulls and logs use the execution role), on
    // this cluster and its container instances; endpoint discovery has no resource to scope to.
    const containerInstances = Fn.sub('arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:container-instance/${Cluster}/*', { Cluster: cluster.ref });
    const hostRole = role(this, 'HostRole', 'ec2.amazonaws.com', [
      { actions: ['ecs:DiscoverPollEndpoint'], resources: ['*'] },
      {
        actions: [
          'ecs:RegisterContainerInstance',
          'ecs:DeregisterContainerInstance',
          'ecs:Poll',
          'ecs:StartTelemetrySession',
          'ecs:UpdateContainerInstancesState',
          'ecs:SubmitContainerStateChange',
          'ecs:SubmitTaskStateChange',
          'ecs:SubmitAttachmentStateChanges',
        ],
        resources: [cluster.attrArn, containerInstances],
      },
    ]);
    const instanceProfile = new iam.CfnInstanceProfile(this, 'HostInstanceProfile', { roles: [hostRole.ref] });
    const launchTemplate = new ec2.CfnLaunchTemplate(this, 'HostLaunchTemplate', {
      launchTemplateData: {
        imageId: ami.valueAsString,
        instanceType: instanceType.valueAsString,
        iamInstanceProfile: { arn: instanceProfile.attrArn },
        securityGroupIds: [hostGroup.attrGroupId],
        // IMDSv2 with one hop: containers on the bridge cannot borrow the host's credentials.
        metadataOptions: { httpTokens: 'required', httpPutResponseHopLimit: 1 },
        userData: Fn.base64(Fn.sub('#!/bin/bash\necho ECS_CLUSTER=${Cluster} >> /etc/ecs/ecs.config\n', { Cluster: cluster.ref })),
      },
    });
    const hosts = new autoscaling.CfnAutoScalingGroup(this, 'HostAutoScalingGroup', {
      minSize: minHosts.valueAsString,
      maxSize: maxHosts.valueAsString,
      vpcZoneIdentifier: hostSubnets.valueAsList,
      launchTemplate: { launchTemplateId: launchTemplate.ref, version: launchTemplate.attrLatestVersionNumber },
      // Managed termination protection: ECS decides which hosts are empty enough to go.
      newInstancesProtectedFromScaleIn: true,
    });
    const capacityProvider = new ecs.CfnCapacityProvider(this, 'CapacityProvider', {
      autoScalingGroupProvider: {
        autoScalingGroupArn: hosts.ref,
        managedScaling: { status: 'ENABLED', targetCapacity: settings.capacityProviderTargetPercent },
        managedTerminationProtection: 'ENABLED',
        managedDraining: 'ENABLED',
      },
    });
    const association = new ecs.CfnClusterCapacityProviderAssociations(this, 'ClusterCapacityProviders', {
      cluster: cluster.ref,
      capacityProviders: [capacityProvider.ref],
      defaultCapacityProviderStrategy: [{ capacityProvider: capacityProvider.ref, weight: 1 }],
    });

    // Task roles: pulling this repository and writing this log group; reading this bucket.
    const executionRole = role(this, 'ExecutionRole', 'ecs-tasks.amazonaws.com', [
      { actions: ['ecr:GetAuthorizationToken'], resources: ['*'] },
      {
        actions: ['ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer', 'ecr:BatchCheckLayerAvailability'],
        resources: [Fn.sub('arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${Repository}', { Repository: repository.valueAsString })],
      },
      { actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [logGroup.attrArn] },
    ]);
    const taskRole = role(this, 'TaskRole', 'ecs-tasks.amazonaws.com', [
      { actions: ['s3:GetObject'], resources: [Fn.sub('arn:${AWS::Partition}:s3:::${Bucket}/${Prefix}*', { Bucket: bucket.valueAsString, Prefix: prefix.valueAsString })] },
      // Listing lets S3 answer "no such key" (404) instead of "access denied" for missing images.
      {
        actions: ['s3:ListBucket'],
        resources: [Fn.sub('arn:${AWS::Partition}:s3:::${Bucket}', { Bucket: bucket.valueAsString })],
        condition: { StringLike: { 's3:prefix': Fn.sub('${Prefix}*', { Prefix: prefix.valueAsString }) } },
      },
    ]);

    const refs = {
      image: Fn.sub('${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/${Repository}:${Tag}', { Repository: repository.valueAsString, Tag: imageTag.valueAsString }),
      executionRoleArn: executionRole.attrArn,
      taskRoleArn: taskRole.attrArn,
      bucket: bucket.valueAsString,
      bucketPrefix: prefix.valueAsString,
      logGroup: logGroup.ref,
      region: Aws.REGION,
      cluster: cluster.ref,
      targetGroupArn: targetGroup.ref,
      capacityProvider: capacityProvider.ref,
    };
    const task = new ecs.CfnTaskDefinition(this, 'TaskDefinition', taskDefinition(refs, sizing));
    // Two ECS API names that CloudFormation spells differently (an unknown L1 prop is dropped
    // silently: a test compares the two renderings key by key).
    const { placementStrategy, enableECSManagedTags, ...service } = serviceDefinition(refs);
    const ecsService = new ecs.CfnService(this, 'Service', {
      ...service,
      enableEcsManagedTags: enableECSManagedTags,
      // The revision this stack registered; a new ImageTag registers a new one and rolls it out.
      taskDefinition: task.ref,
      placementStrategies: placementStrategy,
    });
    // The target group must be attached to a listener, and the capacity provider to the cluster, first.
    ecsService.addResourceDependency(listener);
    ecsService.addResourceDependency(association);

    const scalable = new appscaling.CfnScalableTarget(this, 'ScalableTarget', {
      serviceNamespace: 'ecs',
      scalableDimension: 'ecs:service:DesiredCount',
      resourceId: Fn.join('/', ['service', cluster.ref, ecsService.attrName]),
      minCapacity: minTasks.valueAsNumber,
      maxCapacity: maxTasks.valueAsNumber,
      roleArn: Fn.sub('arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService'),
    });
    const tracking = (id: string, targetValue: number, predefinedMetricSpecification: appscaling.CfnScalingPolicy.PredefinedMetricSpecificationProperty) =>
      new appscaling.CfnScalingPolicy(this, id, {
        policyName: `${settings.name}-${id}`,
        policyType: 'TargetTrackingScaling',
        scalingTargetId: scalable.ref,
        targetTrackingScalingPolicyConfiguration: {
          targetValue,
          predefinedMetricSpecification,
          scaleOutCooldown: settings.scaleOutCooldownSeconds,
          scaleInCooldown: settings.scaleInCooldownSeconds,
        },
      });
    // Requests per container per minute, from the measured R_max; CPU is the second guard
    // (scale out when either asks, scale in only when both agree).
    tracking('RequestCountScaling', sizing.requestsPerTargetPerMinute, {
      predefinedMetricType: 'ALBRequestCountPerTarget',
      resourceLabel: Fn.join('/', [loadBalancer.attrLoadBalancerFullName, targetGroup.attrTargetGroupFullName]),
    });
    tracking('CpuScaling', sizing.cpuTargetPercent, { predefinedMetricType: 'ECSServiceAverageCPUUtilization' });

    const output = (name: string, value: string) => new CfnOutput(this, name, { value });
    output('LoadBalancerUrl', Fn.sub('http://${Dns}', { Dns: loadBalancer.attrDnsName }));
    output('ClusterName', cluster.ref);
    output('ServiceName', ecsService.attrName);
    output('TargetGroupArn', targetGroup.ref);
    output('ExecutionRoleArn', executionRole.attrArn);
    output('TaskRoleArn', taskRole.attrArn);
    output('LogGroupName', logGroup.ref);
    output('CapacityProviderName', capacityProvider.ref);
  }
}

/** Synthesizes the stack offline and returns the CloudFormation template. */
export async function synthesizeTemplate(sizing: Sizing, capacity: Capacity): Promise<Record<string, unknown>> {
  const outdir = await mkdtemp(join(tmpdir(), 'iiif-cdk-'));
  try {
    const app = new App({ outdir, analyticsReporting: false, context: { 'aws:cdk:enable-path-metadata': false } });
    const stack = new IiifStack(app, 'IiifElastic', sizing, capacity);
    return app.synth().getStackByName(stack.stackName).template as Record<string, unknown>;
  } finally {
    await rm(outdir, { recursive: true, force: true });
  }
}
