"""A moto server (a real HTTP server speaking the ECS and ELBv2 APIs) for the ECS backend's tests.

    python3 moto_ecs.py serve [--broken-image IMAGE]... [--stuck-image IMAGE]... [--settle SECONDS]

starts moto in this process on 127.0.0.1 (port chosen by the kernel), seeds it through its own
HTTP API with boto3, prints one JSON line naming the endpoint and every seeded resource, then
answers `state` lines on stdin with one JSON line of the current state (read through the API
too). It exits when stdin closes, so it never outlives the test that started it.

    python3 moto_ecs.py observe ENDPOINT (--listener ARN | --rule ARN) OUT_FILE

appends the forward action's target-group weights, with $ROLLOUT_WEIGHT, to OUT_FILE: run as a
stage hook, it records what the load balancer held at each stage.

moto accepts UpdateService but never deploys anything: it keeps the service's one deployment and
its old task definition. Here moto is patched to do what the ECS scheduler does (see
`install_deployments`):
- UpdateService with a new task definition (or forceNewDeployment) starts a deployment: a new
  PRIMARY deployment IN_PROGRESS with no tasks running, the previous PRIMARY one becoming ACTIVE.
- Once a deployment has been IN_PROGRESS for `--settle` seconds, the next look at the service
  (DescribeServices) finds it finished the way ECS would finish it, decided by the images of its
  task definition: an image given with --broken-image cannot start, so the deployment circuit
  breaker marks the deployment FAILED (the older deployment keeps its tasks); an image given with
  --stuck-image starts but never becomes healthy, so the deployment stays IN_PROGRESS forever;
  any other image completes: rolloutState COMPLETED, every desired task running, and the older
  deployments drained and gone.
"""

import argparse
import json
import os
import sys
import threading
import time
import uuid

REGION = "us-east-1"
ACCOUNT = "123456789012"


def client(service, endpoint):
    import boto3

    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def install_deployments(broken, stuck, settle):
    from moto.core.utils import utcnow
    from moto.ecs.models import EC2ContainerServiceBackend

    lock = threading.RLock()
    started = {}

    def images(backend, task_definition):
        td = backend.describe_task_definition(task_definition)
        return {c.get("image") for c in td.container_definitions}

    def start(backend, service):
        td = backend.describe_task_definition(service.task_definition).arn
        for d in service.deployments:
            if d["status"] == "PRIMARY":
                d["status"] = "ACTIVE"
        deployment_id = f"ecs-svc/{uuid.uuid4().int % 10**19}"
        now = utcnow()
        service.deployments.insert(
            0,
            {
                "id": deployment_id,
                "status": "PRIMARY",
                "taskDefinition": td,
                "desiredCount": service.desired_count,
                "pendingCount": service.desired_count,
                "runningCount": 0,
                "failedTasks": 0,
                "createdAt": now,
                "updatedAt": now,
                "launchType": service.launch_type,
                "rolloutState": "IN_PROGRESS",
                "rolloutStateReason": f"ECS deployment {deployment_id} in progress.",
            },
        )
        started[deployment_id] = time.monotonic()

    def advance(backend, service):
        for d in list(service.deployments):
            if d["status"] != "PRIMARY" or d["rolloutState"] != "IN_PROGRESS":
                continue
            # Deployments moto made itself (at CreateService) count as long started.
            if time.monotonic() - started.get(d["id"], 0.0) < settle:
                continue
            seen = images(backend, d["taskDefinition"])
            d["updatedAt"] = utcnow()
            if seen & broken:
                d.update(
                    rolloutState="FAILED",
                    rolloutStateReason="ECS deployment circuit breaker: tasks failed to start.",
                    failedTasks=d["desiredCount"],
                    pendingCount=0,
                    runningCount=0,
                )
            elif seen & stuck:
                d["failedTasks"] += 1
            else:
                d.update(
                    rolloutState="COMPLETED",
                    rolloutStateReason=f"ECS deployment {d['id']} completed.",
                    runningCount=d["desiredCount"],
                    pendingCount=0,
                )
                service.deployments = [d]
                service.running_count = d["desiredCount"]
                service.pending_count = 0

    original_update = EC2ContainerServiceBackend.update_service
    original_describe = EC2ContainerServiceBackend.describe_services

    def update_service(self, properties):
        with lock:
            cluster = properties.get("cluster", "default")
            name = properties["service"].split("/")[-1]
            before = self._get_service(cluster, name).task_definition
            force = properties.get("force_new_deployment", False)
            service = original_update(self, properties)
            if service.task_definition != before or force:
                start(self, service)
            return service

    def describe_services(self, cluster, names):
        with lock:
            services, failures = original_describe(self, cluster, names)
            for service in services:
                advance(self, service)
            return services, failures

    EC2ContainerServiceBackend.update_service = update_service
    EC2ContainerServiceBackend.describe_services = describe_services


def seed(endpoint):
    ecs = client("ecs", endpoint)
    ec2 = client("ec2", endpoint)
    elb = client("elbv2", endpoint)

    ecs.create_cluster(clusterName="prod")
    web = ecs.register_task_definition(
        family="web",
        taskRoleArn=f"arn:aws:iam::{ACCOUNT}:role/web",
        executionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/ecsTaskExecutionRole",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="512",
        memory="1024",
        volumes=[{"name": "scratch"}],
        runtimePlatform={"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
        ephemeralStorage={"sizeInGiB": 30},
        tags=[{"key": "team", "value": "payments"}],
        containerDefinitions=[
            {
                "name": "app",
                "image": "registry.example/web:1.0",
                "cpu": 384,
                "memory": 768,
                "essential": True,
                "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
                "environment": [{"name": "MODE", "value": "prod"}],
                "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/scratch"}],
            },
            {
                "name": "log-router",
                "image": "registry.example/fluent-bit:2",
                "essential": False,
                "memory": 128,
            },
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    canary_td = ecs.register_task_definition(
        family="web-canary",
        containerDefinitions=[
            {"name": "app", "image": "registry.example/web:1.0", "memory": 512}
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster="prod", serviceName="web", taskDefinition=web, desiredCount=2)
    ecs.create_service(
        cluster="prod", serviceName="web-canary", taskDefinition=canary_td, desiredCount=1
    )
    # Settles the deployments CreateService started (see `advance`).
    ecs.describe_services(cluster="prod", services=["web", "web-canary"])

    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for cidr, zone in [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")]
    ]
    lb = elb.create_load_balancer(Name="web", Subnets=subnets, Type="application")
    lb = lb["LoadBalancers"][0]["LoadBalancerArn"]

    def target_group(name):
        return elb.create_target_group(
            Name=name, Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip"
        )["TargetGroups"][0]["TargetGroupArn"]

    stable, canary, other = target_group("web-stable"), target_group("web-canary"), target_group("web-other")
    # The listener forwards everything to stable, in the single-target-group form.
    listener = elb.create_listener(
        LoadBalancerArn=lb,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": stable}],
    )["Listeners"][0]["ListenerArn"]
    # The rule already names both, with stickiness that must survive every change.
    rule = elb.create_rule(
        ListenerArn=listener,
        Priority=10,
        Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
        Actions=[
            {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": stable, "Weight": 100},
                        {"TargetGroupArn": canary, "Weight": 0},
                    ],
                    "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": 300},
                },
            }
        ],
    )["Rules"][0]["RuleArn"]
    # A rule that sends traffic to a third target group: not one rollout may weight.
    foreign_rule = elb.create_rule(
        ListenerArn=listener,
        Priority=20,
        Conditions=[{"Field": "path-pattern", "Values": ["/other/*"]}],
        Actions=[
            {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": stable, "Weight": 50},
                        {"TargetGroupArn": other, "Weight": 50},
                    ]
                },
            }
        ],
    )["Rules"][0]["RuleArn"]
    return {
        "endpoint": endpoint,
        "region": REGION,
        "cluster": "prod",
        "service": "web",
        "canary_service": "web-canary",
        "task_definition": web,
        "canary_task_definition": canary_td,
        "listener": listener,
        "rule": rule,
        "foreign_rule": foreign_rule,
        "stable_tg": stable,
        "canary_tg": canary,
        "other_tg": other,
    }


def state(seeded):
    endpoint = seeded["endpoint"]
    ecs = client("ecs", endpoint)
    elb = client("elbv2", endpoint)
    services = {}
    for s in ecs.describe_services(cluster="prod", services=["web", "web-canary"])["services"]:
        services[s["serviceName"]] = {
            "taskDefinition": s["taskDefinition"],
            "deployments": [
                {k: d.get(k) for k in ("status", "taskDefinition", "rolloutState", "runningCount", "desiredCount")}
                for d in s["deployments"]
            ],
        }
    task_definitions = {}
    for family in ("web", "web-canary"):
        for arn in ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]:
            out = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
            task_definitions[arn] = {"taskDefinition": out["taskDefinition"], "tags": out.get("tags", [])}
    listener = elb.describe_listeners(ListenerArns=[seeded["listener"]])["Listeners"][0]
    rule = elb.describe_rules(RuleArns=[seeded["rule"]])["Rules"][0]
    return {
        "services": services,
        "taskDefinitions": task_definitions,
        "listenerActions": listener["DefaultActions"],
        "ruleActions": rule["Actions"],
        "ruleConditions": rule["Conditions"],
    }


def serve(args):
    from moto.server import ThreadedMotoServer

    install_deployments(set(args.broken_image), set(args.stuck_image), args.settle)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    seeded = seed(f"http://{host}:{port}")
    print(json.dumps(seeded), flush=True)
    for line in sys.stdin:
        if line.strip() == "state":
            print(json.dumps(state(seeded), default=str), flush=True)
    server.stop()


def observe(args):
    elb = client("elbv2", args.endpoint)
    if args.listener:
        actions = elb.describe_listeners(ListenerArns=[args.listener])["Listeners"][0]["DefaultActions"]
    else:
        actions = elb.describe_rules(RuleArns=[args.rule])["Rules"][0]["Actions"]
    forward = next(a for a in actions if a["Type"] == "forward")
    groups = forward.get("ForwardConfig", {}).get("TargetGroups") or [
        {"TargetGroupArn": forward["TargetGroupArn"], "Weight": 1}
    ]
    line = {
        "stage_weight": os.environ.get("ROLLOUT_WEIGHT"),
        "weights": {g["TargetGroupArn"]: g.get("Weight") for g in groups},
    }
    with open(args.out, "a") as out:
        out.write(json.dumps(line) + "\n")


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("serve")
    s.add_argument("--broken-image", action="append", default=[])
    s.add_argument("--stuck-image", action="append", default=[])
    s.add_argument("--settle", type=float, default=0.5)
    o = commands.add_parser("observe")
    o.add_argument("endpoint")
    o.add_argument("--listener")
    o.add_argument("--rule")
    o.add_argument("out")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
    else:
        observe(args)


if __name__ == "__main__":
    main()
