/**
 * The whole stack as an AWS CDK app, synthesized offline into one CloudFormation template:
 * ALB → target group → many identical containers on an Auto Scaling group of ECS hosts → S3.
 * L1 resources throughout, so every property that matters is spelled out here and the template
 * needs no CDK bootstrap, no lookups and no account at synthesis time.
 *
 * It works in an empty account: it creates the image repository itself, and creates the service
 * only once an ImageTag is given (a first deployment without one makes the repository to push
 * to), so nothing waits for an image that does not exist yet.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Aws, CfnCondition, CfnDeletionPolicy, CfnMapping, CfnOutput, CfnParameter, CfnResource, DefaultStackSynthesizer, Fn, type IResolvable, Stack, Token } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { RegionInfo } from 'aws-cdk-lib/region-info';
import type { Construct } from 'constructs';
import type { Capacity } from './capacity.js';
import { derivativesTaskDefinition, serviceDefinition, taskDefinition } from './ecs.js';
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

/** A role `service` may assume, with its statements as one policy, plus `more` policies (conditional ones, for instance). */
function role(scope: Construct, id: string, service: string, statements: Statement[], more: IResolvable[] = []): iam.CfnRole {
  return new iam.CfnRole(scope, id, {
    assumeRolePolicyDocument: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { Service: service }, Action: 'sts:AssumeRole' }] },
    policies: [{ policyName: 'least-privilege', policyDocument: policy(statements) }, ...more],
  });
}

/** Logs and images outlive the stack: deleting or replacing it must not erase them (deploy/README.md says how to remove them). */
function retain(resource: CfnResource): void {
  resource.cfnOptions.deletionPolicy = CfnDeletionPolicy.RETAIN;
  resource.cfnOptions.updateReplacePolicy = CfnDeletionPolicy.RETAIN;
}

/** ALB access logs: the ELB account of each older region, or (newer regions) ELB's log-delivery service principal. */
const NO_ELB_ACCOUNT = 'none';
const ELB_LOG_DELIVERY_SERVICE = 'logdelivery.elasticloadbalancing.amazonaws.com';

/** ECR lifecycle: untagged layers go after some days; of tagged images (each a possible rollback) the newest are kept. */
function lifecyclePolicyText(): string {
  const { keepImages, untaggedDays } = settings.repository;
  return JSON.stringify({
    rules: [
      { rulePriority: 1, description: 'untagged images', selection: { tagStatus: 'untagged', countType: 'sinceImagePushed', countUnit: 'days', countNumber: untaggedDays }, action: { type: 'expire' } },
      { rulePriority: 2, description: `all but the newest ${keepImages} images`, selection: { tagStatus: 'any', countType: 'imageCountMoreThan', countNumber: keepImages }, action: { type: 'expire' } },
    ],
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
        setup: capacity.setup,
        sloP99Ms: capacity.sloP99Ms,
        headroom: capacity.headroom,
        sustainableRequestsPerSecond: capacity.sustainableRequestsPerSecond,
      },
    };

    const parameter = (name: string, props: ConstructorParameters<typeof CfnParameter>[2]) => new CfnParameter(this, name, props);
    const vpcId = parameter('VpcId', { type: 'AWS::EC2::VPC::Id', description: 'VPC of the load balancer and the hosts' });
    const vpcCidr = parameter('VpcCidr', {
      type: 'String',
      allowedPattern: '^\\d{1,3}(\\.\\d{1,3}){3}/\\d{1,2}$',
      description: "The VPC's CIDR block: each container's metrics port (and operator routes) is open to it, never to the load balancer or the internet",
    });
    const albSubnets = parameter('PublicSubnetIds', { type: 'List<AWS::EC2::Subnet::Id>', description: 'Public subnets in at least two availability zones, for the load balancer' });
    const hostSubnets = parameter('HostSubnetIds', {
      type: 'List<AWS::EC2::Subnet::Id>',
      description: 'One subnet per availability zone for the hosts (at least one host runs in each): private, with a NAT gateway or VPC endpoints for ECS, ECR, S3 and CloudWatch',
    });
    const allowedCidr = parameter('AllowedCidr', { type: 'String', default: '0.0.0.0/0', description: 'Who may reach the load balancer' });
    const repositoryName = parameter('ImageRepository', {
      type: 'String',
      default: settings.name,
      allowedPattern: '^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$',
      description: 'Name of the ECR repository this stack creates for the image',
    });
    const imageTag = parameter('ImageTag', {
      type: 'String',
      default: '',
      allowedPattern: '^([0-9a-f]{7,40})?$',
      constraintDescription: 'a git commit SHA: tags are immutable, never latest',
      description: 'Image tag to run (the git SHA it was built from); empty creates everything but the service, so the repository exists to push to',
    });
    const bucket = parameter('ImageBucket', { type: 'String', description: "S3 bucket holding the source images (read only), in this stack's region" });
    const prefix = parameter('ImagePrefix', { type: 'String', default: '', description: 'Key prefix of the images in the bucket' });
    const derivativePrefix = parameter('DerivativePrefix', {
      type: 'String',
      default: 'derivatives/',
      // No "*" (it would widen the write grant) and no leading "/"; a folder, so the grant ends at it.
      allowedPattern: "^([A-Za-z0-9!_.'()-][A-Za-z0-9!_.'()/-]*/)?$",
      constraintDescription: 'empty, or a key prefix ending in "/" without "*"',
      description:
        "Key prefix in ImageBucket of the fleet's shared derivative store (pyramids and image information made once per source version, read by every container): the only keys the containers may write or delete. Keep it apart from the source images. Empty: each container converts and keeps its own pyramids, and the task role only reads",
    });
    const instanceType = parameter('InstanceType', {
      type: 'String',
      default: settings.hosts.instanceType,
      allowedValues: Object.keys(sizing.hosts),
      description: 'Host instance type (measure capacity on this type); the root volume is sized for the containers that fit on it',
    });
    const ami = parameter('HostAmi', {
      type: 'AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>',
      default: '/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id',
      description: 'ECS-optimized AMI',
    });
    const maxHosts = parameter('MaxHosts', { type: 'Number', default: settings.hosts.max, minValue: 2, description: 'At least the number of HostSubnetIds (the floor is one host per zone)' });
    const minTasks = parameter('MinTasks', { type: 'Number', default: settings.service.minTasks, minValue: 2, description: 'At least two, so a task survives the loss of a zone' });
    const maxTasks = parameter('MaxTasks', { type: 'Number', default: settings.service.maxTasks, minValue: 2 });

    const hasImage = new CfnCondition(this, 'HasImage', { expression: Fn.conditionNot(Fn.conditionEquals(imageTag.valueAsString, '')) });
    const hasDerivatives = new CfnCondition(this, 'HasDerivatives', { expression: Fn.conditionNot(Fn.conditionEquals(derivativePrefix.valueAsString, '')) });
    const hasImageAndDerivatives = new CfnCondition(this, 'HasImageAndDerivatives', { expression: Fn.conditionAnd(hasImage, hasDerivatives) });
    const hostTypes = new CfnMapping(this, 'HostTypes', {
      mapping: Object.fromEntries(Object.entries(sizing.hosts).map(([type, host]) => [type, { VolumeGiB: host.volumeGiB, TasksPerHost: host.tasksPerHost }])),
    });
    const elbAccounts = new CfnMapping(this, 'ElbLogDelivery', {
      mapping: Object.fromEntries(RegionInfo.regions.map((region) => [region.name, { Account: region.elbv2Account ?? NO_ELB_ACCOUNT }])),
    });
    const elbAccount = elbAccounts.findInMap(Aws.REGION, 'Account');
    const hasElbAccount = new CfnCondition(this, 'RegionHasElbAccount', { expression: Fn.conditionNot(Fn.conditionEquals(elbAccount, NO_ELB_ACCOUNT)) });

    const repository = new ecr.CfnRepository(this, 'Repository', {
      repositoryName: repositoryName.valueAsString,
      imageTagMutability: 'IMMUTABLE',
      imageScanningConfiguration: { scanOnPush: true },
      encryptionConfiguration: { encryptionType: 'AES256' },
      lifecyclePolicy: { lifecyclePolicyText: lifecyclePolicyText() },
    });
    retain(repository);
    const logGroup = new logs.CfnLogGroup(this, 'LogGroup', { retentionInDays: settings.logRetentionDays });
    retain(logGroup);
    const accessLogs = new s3.CfnBucket(this, 'AccessLogBucket', {
      // ALB log delivery supports SSE-S3 only.
      bucketEncryption: { serverSideEncryptionConfiguration: [{ serverSideEncryptionByDefault: { sseAlgorithm: 'AES256' } }] },
      publicAccessBlockConfiguration: { blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true },
      ownershipControls: { rules: [{ objectOwnership: 'BucketOwnerEnforced' }] },
      lifecycleConfiguration: { rules: [{ id: 'expire-access-logs', status: 'Enabled', expirationInDays: settings.accessLogs.retentionDays }] },
    });
    retain(accessLogs);
    const accessLogPolicy = new s3.CfnBucketPolicy(this, 'AccessLogBucketPolicy', {
      bucket: accessLogs.ref,
      policyDocument: {
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'LoadBalancerAccessLogs',
            Effect: 'Allow',
            Principal: Fn.conditionIf(hasElbAccount.logicalId, { AWS: Fn.sub('arn:${AWS::Partition}:iam::${Account}:root', { Account: elbAccount }) }, { Service: ELB_LOG_DELIVERY_SERVICE }),
            Action: 's3:PutObject',
            Resource: Fn.sub('${Bucket}/${Prefix}/AWSLogs/${AWS::AccountId}/*', { Bucket: accessLogs.attrArn, Prefix: settings.accessLogs.prefix }),
          },
          {
            Sid: 'TlsOnly',
            Effect: 'Deny',
            Principal: '*',
            Action: 's3:*',
            Resource: [accessLogs.attrArn, Fn.sub('${Bucket}/*', { Bucket: accessLogs.attrArn })],
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          },
        ],
      },
    });
    const cluster = new ecs.CfnCluster(this, 'Cluster', { clusterSettings: [{ name: 'containerInsights', value: 'enabled' }] });

    // Network: the ALB takes the public traffic; hosts accept only the ALB on Docker's ephemeral
    // range, and the VPC on the same range for each container's metrics port.
    const albGroup = new ec2.CfnSecurityGroup(this, 'AlbSecurityGroup', {
      groupDescription: 'iiif-elastic load balancer',
      vpcId: vpcId.valueAsString,
      securityGroupIngress: [{ ipProtocol: 'tcp', fromPort: 80, toPort: 80, cidrIp: allowedCidr.valueAsString }],
    });
    const hostGroup = new ec2.CfnSecurityGroup(this, 'HostSecurityGroup', { groupDescription: 'iiif-elastic ECS hosts', vpcId: vpcId.valueAsString });
    const { from, to } = settings.hostPortRange;
    new ec2.CfnSecurityGroupIngress(this, 'HostIngressFromAlb', {
      groupId: hostGroup.attrGroupId,
      ipProtocol: 'tcp',
      fromPort: from,
      toPort: to,
      sourceSecurityGroupId: albGroup.attrGroupId,
      description: 'dynamic host ports (hostPort 0), from the load balancer only',
    });
    new ec2.CfnSecurityGroupIngress(this, 'HostIngressFromVpc', {
      groupId: hostGroup.attrGroupId,
      ipProtocol: 'tcp',
      fromPort: from,
      toPort: to,
      cidrIp: vpcCidr.valueAsString,
      description: 'dynamic host ports, from inside the VPC: the metrics port (Prometheus, operators)',
    });

    const loadBalancer = new elbv2.CfnLoadBalancer(this, 'LoadBalancer', {
      type: 'application',
      scheme: 'internet-facing',
      subnets: albSubnets.valueAsList,
      securityGroups: [albGroup.attrGroupId],
      loadBalancerAttributes: [
        { key: 'idle_timeout.timeout_seconds', value: String(settings.albIdleTimeoutSeconds) },
        // The containers keep no access log of their own (IIIF_ACCESS_LOG=false): the ALB's is the record.
        { key: 'access_logs.s3.enabled', value: 'true' },
        { key: 'access_logs.s3.bucket', value: accessLogs.ref },
        { key: 'access_logs.s3.prefix', value: settings.accessLogs.prefix },
      ],
    });
    // The ALB checks that it may write to the bucket when logging is switched on.
    loadBalancer.addResourceDependency(accessLogPolicy);
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
        { key: 'deregistration_delay.timeout_seconds', value: String(sizing.timings.deregistrationDelaySeconds) },
        { key: 'slow_start.duration_seconds', value: String(tg.slowStartSeconds) },
        // Slow start needs round robin (the ALB refuses it with least outstanding requests).
        { key: 'load_balancing.algorithm.type', value: 'round_robin' },
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
        // The root volume holds Docker's images and every container's cache volumes: sized per
        // type for the containers that fit on it (sizing.ts), so the caches never fill it.
        blockDeviceMappings: [
          {
            deviceName: '/dev/xvda',
            ebs: { volumeSize: Token.asNumber(hostTypes.findInMap(instanceType.valueAsString, 'VolumeGiB')), volumeType: 'gp3', encrypted: true, deleteOnTermination: true },
          },
        ],
        // IMDSv2 with one hop: containers on the bridge cannot borrow the host's credentials.
        metadataOptions: { httpTokens: 'required', httpPutResponseHopLimit: 1 },
        userData: Fn.base64(Fn.sub('#!/bin/bash\necho ECS_CLUSTER=${Cluster} >> /etc/ecs/ecs.config\n', { Cluster: cluster.ref })),
      },
    });
    const hosts = new autoscaling.CfnAutoScalingGroup(this, 'HostAutoScalingGroup', {
      // One host per availability zone at least (Fn::Length, from the AWS::LanguageExtensions
      // transform), so the service's spread over zones has a host in each.
      minSize: Token.asString(Fn.len(hostSubnets.valueAsList)),
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

    // Task roles: pulling from this repository and writing this log group; reading this bucket.
    const executionRole = role(this, 'ExecutionRole', 'ecs-tasks.amazonaws.com', [
      { actions: ['ecr:GetAuthorizationToken'], resources: ['*'] },
      { actions: ['ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer', 'ecr:BatchCheckLayerAvailability'], resources: [repository.attrArn] },
      { actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [logGroup.attrArn] },
    ]);
    // S3 grants by key prefix: objects below it, and listing below it (listing lets S3 answer
    // "no such key", 404, instead of "access denied" for a missing key).
    const objectsBelow = (keyPrefix: string) => Fn.sub('arn:${AWS::Partition}:s3:::${Bucket}/${Prefix}*', { Bucket: bucket.valueAsString, Prefix: keyPrefix });
    const listBelow = (keyPrefix: string): Statement => ({
      actions: ['s3:ListBucket'],
      resources: [Fn.sub('arn:${AWS::Partition}:s3:::${Bucket}', { Bucket: bucket.valueAsString })],
      condition: { StringLike: { 's3:prefix': Fn.sub('${Prefix}*', { Prefix: keyPrefix }) } },
    });
    const readSources: Statement[] = [{ actions: ['s3:GetObject'], resources: [objectsBelow(prefix.valueAsString)] }, listBelow(prefix.valueAsString)];
    // The derivative store: leases (conditional creates, deletes), pyramids and their image
    // information, all below DerivativePrefix and nowhere else.
    const derivativeStore: Statement[] = [
      { actions: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'], resources: [objectsBelow(derivativePrefix.valueAsString)] },
      listBelow(derivativePrefix.valueAsString),
    ];
    // The sources stay read-only; the derivative store's grant exists only while a prefix is set
    // (an empty one would make it the whole bucket).
    const taskRole = role(this, 'TaskRole', 'ecs-tasks.amazonaws.com', readSources, [
      Fn.conditionIf(hasDerivatives.logicalId, { PolicyName: 'derivative-store', PolicyDocument: policy(derivativeStore) }, Aws.NO_VALUE),
    ]);
    // The one-off task that pre-builds the derivatives (ecs/derivatives-task-definition.json): the same grants, a role of its own.
    const derivativesTaskRole = role(this, 'DerivativesTaskRole', 'ecs-tasks.amazonaws.com', [...readSources, ...derivativeStore]);
    derivativesTaskRole.cfnOptions.condition = hasDerivatives;

    // Deployment alarms: a rollout whose tasks stay healthy but answer errors or slowly is rolled back too.
    const alarms = settings.alarms;
    const albDimensions = [
      { name: 'LoadBalancer', value: loadBalancer.attrLoadBalancerFullName },
      { name: 'TargetGroup', value: targetGroup.attrTargetGroupFullName },
    ];
    const albMetric = (id: string, metricName: string, dimensions: typeof albDimensions): cloudwatch.CfnAlarm.MetricDataQueryProperty => ({
      id,
      metricStat: { metric: { namespace: 'AWS/ApplicationELB', metricName, dimensions }, period: 60, stat: 'Sum' },
      returnData: false,
    });
    const alarmTiming = { evaluationPeriods: alarms.evaluationMinutes, datapointsToAlarm: alarms.evaluationMinutes, comparisonOperator: 'GreaterThanThreshold', treatMissingData: 'notBreaching' };
    const errorRateAlarm = new cloudwatch.CfnAlarm(this, 'ErrorRateAlarm', {
      alarmDescription: `5xx answers (the containers' and the load balancer's) above ${alarms.errorRatePercent} % of requests for ${alarms.evaluationMinutes} minutes`,
      ...alarmTiming,
      threshold: alarms.errorRatePercent,
      metrics: [
        { id: 'rate', expression: '100 * (FILL(target5xx, 0) + FILL(elb5xx, 0)) / requests', label: '5xx per 100 requests', returnData: true },
        albMetric('target5xx', 'HTTPCode_Target_5XX_Count', albDimensions),
        albMetric('elb5xx', 'HTTPCode_ELB_5XX_Count', albDimensions.slice(0, 1)),
        albMetric('requests', 'RequestCount', albDimensions),
      ],
    });
    const latencyAlarm = new cloudwatch.CfnAlarm(this, 'LatencyAlarm', {
      alarmDescription: `p99 response time above ${sizing.latencyAlarmSeconds} s (${alarms.latencyFactor} × the p99 measured at R_max) for ${alarms.evaluationMinutes} minutes`,
      ...alarmTiming,
      threshold: sizing.latencyAlarmSeconds,
      namespace: 'AWS/ApplicationELB',
      metricName: 'TargetResponseTime',
      dimensions: albDimensions,
      extendedStatistic: 'p99',
      period: 60,
    });

    const refs = {
      image: Fn.sub('${Uri}:${Tag}', { Uri: repository.attrRepositoryUri, Tag: imageTag.valueAsString }),
      executionRoleArn: executionRole.attrArn,
      taskRoleArn: taskRole.attrArn,
      bucket: bucket.valueAsString,
      bucketPrefix: prefix.valueAsString,
      derivativePrefix: derivativePrefix.valueAsString,
      logGroup: logGroup.ref,
      region: Aws.REGION,
      cluster: cluster.ref,
      targetGroupArn: targetGroup.ref,
      capacityProvider: capacityProvider.ref,
      alarmNames: [errorRateAlarm.ref, latencyAlarm.ref],
    };
    const withImage = (resource: CfnResource) => {
      resource.cfnOptions.condition = hasImage;
      return resource;
    };
    const task = withImage(new ecs.CfnTaskDefinition(this, 'TaskDefinition', taskDefinition(refs, sizing))) as ecs.CfnTaskDefinition;
    const derivativesTask = new ecs.CfnTaskDefinition(this, 'DerivativesTaskDefinition', derivativesTaskDefinition(refs, { taskRoleArn: derivativesTaskRole.attrArn }, sizing));
    derivativesTask.cfnOptions.condition = hasImageAndDerivatives;
    // Two ECS API names that CloudFormation spells differently (an unknown L1 prop is dropped
    // silently: a test compares the two renderings key by key).
    const { placementStrategy, enableECSManagedTags, ...service } = serviceDefinition(refs);
    const ecsService = withImage(
      new ecs.CfnService(this, 'Service', {
        ...service,
        enableEcsManagedTags: enableECSManagedTags,
        // The revision this stack registered; a new ImageTag registers a new one and rolls it out.
        taskDefinition: task.ref,
        placementStrategies: placementStrategy,
      }),
    ) as ecs.CfnService;
    // The target group must be attached to a listener, and the capacity provider to the cluster, first.
    ecsService.addResourceDependency(listener);
    ecsService.addResourceDependency(association);

    // No RoleARN: Application Auto Scaling uses (and creates, in an account that has none yet)
    // its service-linked role for ECS by itself; naming that role's ARN fails where it is missing.
    const scalable = withImage(
      new appscaling.CfnScalableTarget(this, 'ScalableTarget', {
        serviceNamespace: 'ecs',
        scalableDimension: 'ecs:service:DesiredCount',
        resourceId: Fn.join('/', ['service', cluster.ref, ecsService.attrName]),
        minCapacity: minTasks.valueAsNumber,
        maxCapacity: maxTasks.valueAsNumber,
      }),
    ) as appscaling.CfnScalableTarget;
    const tracking = (id: string, targetValue: number, predefinedMetricSpecification: appscaling.CfnScalingPolicy.PredefinedMetricSpecificationProperty) =>
      withImage(
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
        }),
      );
    // Requests per container per minute, from the measured R_max; CPU at the same point of the
    // measured curve (scale out when either asks, scale in only when both agree).
    tracking('RequestCountScaling', sizing.requestsPerTargetPerMinute, {
      predefinedMetricType: 'ALBRequestCountPerTarget',
      resourceLabel: Fn.join('/', [loadBalancer.attrLoadBalancerFullName, targetGroup.attrTargetGroupFullName]),
    });
    tracking('CpuScaling', sizing.cpuTargetPercent, { predefinedMetricType: 'ECSServiceAverageCPUUtilization' });

    const output = (name: string, value: string, condition?: CfnCondition) => new CfnOutput(this, name, { value, condition });
    output('LoadBalancerUrl', Fn.sub('http://${Dns}', { Dns: loadBalancer.attrDnsName }));
    output('RepositoryUri', repository.attrRepositoryUri);
    output('ClusterName', cluster.ref);
    output('ServiceName', ecsService.attrName, hasImage);
    output('TargetGroupArn', targetGroup.ref);
    output('ExecutionRoleArn', executionRole.attrArn);
    output('TaskRoleArn', taskRole.attrArn);
    output('DerivativesTaskRoleArn', derivativesTaskRole.attrArn, hasDerivatives);
    output('DerivativesTaskDefinitionArn', derivativesTask.ref, hasImageAndDerivatives);
    output('LogGroupName', logGroup.ref);
    output('AccessLogBucketName', accessLogs.ref);
    output('CapacityProviderName', capacityProvider.ref);
    output('AutoScalingGroupName', hosts.ref);
    output('ErrorRateAlarmName', errorRateAlarm.ref);
    output('LatencyAlarmName', latencyAlarm.ref);
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
