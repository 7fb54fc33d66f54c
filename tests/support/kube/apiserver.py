#!/usr/bin/env python3
"""A stand-in Kubernetes API server for the kubectl backend's end-to-end tests.

No real API server can run on the test machines, so the tests point the real `kubectl` at this
one over plain HTTP on 127.0.0.1. It is built on `kmock` (PyPI), a Kubernetes API emulator:
kmock serves the HTTP API, the discovery documents of a real cluster (its bundled
`/api/v1`, `/apis/apps/v1`, `/apis/gateway.networking.k8s.io/v1`, ...), and keeps every object
with its full history of versions. On top of that this file adds what the kubectl backend relies
on and kmock leaves to its users:

- `metadata.resourceVersion` (one counter for all objects, bumped by every write),
  `metadata.generation` (bumped when `spec` changes), `uid`, `creationTimestamp`;
- PATCH by content type: JSON patch (RFC 6902, applied by kmock through the `jsonpatch`
  package; a failed `test` op is 422) and JSON merge patch (RFC 7386); a `resourceVersion` in
  the patched object that is not the stored one is 409 Conflict; a patch that changes nothing
  writes nothing; `status` cannot be changed through the main resource;
- typed lists (`DeploymentList`, ...) and `NotFound` / `Forbidden` errors shaped as the real
  server shapes them;
- one stored object per resource, served in whichever version a request names (`v1` or
  `v1beta1` of the Gateway API), and discovery that prefers the most stable version;
- authorization: `--forbid VERB:RESOURCE[/NAME]` refuses those requests with 403 and answers
  `SelfSubjectAccessReview`s (`kubectl auth can-i`, which sends them as Kubernetes protobuf)
  consistently with that;
- a Deployment controller that moves `status` the way the real one does: pods of the new
  template come up in steps of maxSurge (25%) and become available after `--pod-ready-after` seconds,
  old pods go as new ones become available, `observedGeneration`, `replicas`,
  `updatedReplicas`, `readyReplicas`, `availableReplicas`, and the `Available` and
  `Progressing` conditions follow; pods of an image given with `--never-ready` never become
  available, and once no progress was made for `spec.progressDeadlineSeconds` the
  `Progressing` condition turns False with reason `ProgressDeadlineExceeded`;
- a Gateway API controller that accepts HTTPRoutes: it sets `status.parents[].conditions`
  (`Accepted`, `ResolvedRefs`, which covers the Services of backendRefs and of RequestMirror
  filters) for the route's latest generation;
- the HTTPRoute CRD's validation of rules, matches, filters and backendRefs (a write that breaks
  it is 422 Invalid, worded as the real server words it; see `httproute_schema.py`), and with
  `--gateway-api v1.1` the pruning of the RequestMirror `percent` and `fraction` fields that
  CRDs before v1.2 do not have.

It also works around two kmock 0.8 discovery bugs (see `_serve_version`, `order_versions`).
What differs from a real API server (docs/plan.md's kubectl section says it too): no strategic
merge patch (415) or server-side apply, no watch guarantees, no admission, no authentication,
no schema validation or defaulting beyond what the seeded objects carry, no real pods or
ReplicaSets (the controller keeps pod counts in memory).

    apiserver.py --objects FILE [--forbid VERB:RESOURCE[/NAME]]... [--never-ready IMAGE]...
                 [--pod-ready-after SECONDS] [--interfere RESOURCE/NAME]...
                 [--gateway-api VERSION]

`--interfere deployments/NAME` has another client edit that object (an annotation) just before
the first PATCH to it is applied, so that a patch computed from an earlier read conflicts.

The objects file is a JSON array of Kubernetes objects to start with. The port bound is
announced as the first line on stdout ("listening 127.0.0.1:PORT"), the readiness signal.
The server stops when its standard input closes or on SIGTERM.

For the tests' own assertions (not Kubernetes paths):
- `GET /_harness/history`: every version of every object, ordered by resourceVersion;
- `GET /_harness/writes`: every request that tried to change something, with its answer.
"""

import argparse
import asyncio
import copy
import datetime
import hashlib
import json
import re
import signal
import sys
import time
import uuid

try:
    import aiohttp.web
    import jsonpatch
    import kmock
    from kmock._internal import dicts

    import httproute_schema
except ImportError as e:  # pragma: no cover - reported to the test, which says how to install
    sys.stderr.write(f"kmock is not installed ({e}): run `python3 -m pip install kmock==0.8`\n")
    sys.exit(3)

TICK = 0.05

RESOURCES = {
    'deployments': ('apps', 'v1', 'Deployment'),
    'services': ('', 'v1', 'Service'),
    'httproutes': ('gateway.networking.k8s.io', 'v1', 'HTTPRoute'),
}
SSAR = kmock.resource('authorization.k8s.io', 'v1', 'selfsubjectaccessreviews')
USER = 'rollout-test'


def now_rfc3339():
    return datetime.datetime.now(tz=datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def status_doc(code, reason, message, details=None):
    return {
        'kind': 'Status',
        'apiVersion': 'v1',
        'metadata': {},
        'status': 'Failure',
        'message': message,
        'reason': reason,
        'details': details or {},
        'code': code,
    }


def group_resource(resource):
    return f"{resource.plural}.{resource.group}" if resource.group else resource.plural


def protobuf_fields(data):
    """The fields of one protobuf message: {number: [value, ...]}, values as ints or bytes."""
    fields, i = {}, 0

    def varint():
        nonlocal i
        value, shift = 0, 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value = varint()
        elif wire == 2:
            length = varint()
            value, i = data[i:i + length], i + length
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def review_from_protobuf(body):
    """A SelfSubjectAccessReview sent as Kubernetes protobuf, as `kubectl auth can-i` sends it.

    The envelope is the 4-byte magic `k8s\\0` and a runtime.Unknown whose field 2 holds the
    object; the review's spec (2) holds resourceAttributes (1), whose string fields are
    numbered as in k8s.io/api/authorization/v1/generated.proto.
    """
    if not body.startswith(b'k8s\x00'):
        raise Failure(415, 'UnsupportedMediaType', 'expected JSON or Kubernetes protobuf')
    unknown = protobuf_fields(body[4:])
    review = protobuf_fields(unknown[2][0])
    spec = protobuf_fields(review.get(2, [b''])[0])
    attrs = protobuf_fields(spec.get(1, [b''])[0])
    names = {1: 'namespace', 2: 'verb', 3: 'group', 4: 'version', 5: 'resource',
             6: 'subresource', 7: 'name'}
    return {
        'kind': 'SelfSubjectAccessReview',
        'apiVersion': 'authorization.k8s.io/v1',
        'metadata': {},
        'spec': {'resourceAttributes': {
            names[n]: attrs[n][0].decode() for n in names if n in attrs
        }},
    }


class Failure(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.doc = status_doc(code, reason, message, details)


class Apiserver(kmock.KubernetesEmulator):
    """kmock's emulator, with the write semantics, errors and authorization of a real server."""

    def configure(self, forbidden, never_ready, pod_ready_after, interfere, gateway_api):
        self.gateway_api = gateway_api
        self.forbidden = forbidden
        self.interfere = set(interfere)
        self.never_ready = never_ready
        self.pod_ready_after = pod_ready_after
        self.revision = 0
        self.writes = []
        self.pods = {}
        self.resources.load_bundled()

    # ---- storage ---------------------------------------------------------------------------

    def next_revision(self):
        self.revision += 1
        return str(self.revision)

    def seed(self, obj):
        group, version = (obj['apiVersion'].split('/') + [''])[:2] if '/' in obj['apiVersion'] \
            else ('', obj['apiVersion'])
        plural = {kind: plural for plural, (_, _, kind) in RESOURCES.items()}[obj['kind']]
        resource = kmock.resource(group, version, plural)
        meta = obj.setdefault('metadata', {})
        meta.setdefault('uid', str(uuid.uuid4()))
        meta.setdefault('creationTimestamp', now_rfc3339())
        meta.setdefault('generation', 1)
        meta['resourceVersion'] = self.next_revision()
        self.objects[resource, meta['namespace'], meta['name']] = obj

    def store(self, key, new):
        """Writes a new version of an object, as one write with its own resourceVersion."""
        new['metadata']['resourceVersion'] = self.next_revision()
        self.objects[key].history.append(new)

    def items(self, plural):
        for (resource, namespace, name), obj in list(self.objects.items()):
            if resource.plural == plural and not obj.deleted:
                yield (resource, namespace, name), obj

    # ---- requests --------------------------------------------------------------------------

    async def _serve_apis(self, request):
        doc = await super()._serve_apis(request)
        for group in doc['groups']:
            self.order_versions(group)
        return doc

    async def _serve_group(self, request):
        return self.order_versions(await super()._serve_group(request))

    @staticmethod
    def order_versions(group):
        # kmock 0.8 picks the preferred version from a set, so it changes from run to run (v1 or
        # v1beta1 for the Gateway API); a real server prefers the most stable, newest version.
        def priority(entry):
            match = re.fullmatch(r'v(\d+)(?:(alpha|beta)(\d+))?', entry['version'])
            major, stage, minor = match.groups() if match else (0, 'alpha', 0)
            return (-{'alpha': 0, 'beta': 1, None: 2}[stage], -int(major), -int(minor or 0))
        group['versions'].sort(key=priority)
        group['preferredVersion'] = group['versions'][0]
        return group

    async def _serve_version(self, request):
        # kmock 0.8 names the core group "/v1" (kubectl then finds no `service` at all) and
        # gives subresources their parent's singular name; a real server says "v1" and "".
        doc = await super()._serve_version(request)
        doc['groupVersion'] = doc['groupVersion'].lstrip('/')
        for entry in doc['resources']:
            if '/' in entry['name']:
                entry['singularName'] = ''
        return doc

    async def _handle(self, request):
        path = request.url.path
        if path == '/_harness/history':
            return aiohttp.web.json_response(self.history())
        if path == '/_harness/writes':
            return aiohttp.web.json_response(self.writes)
        try:
            plural = request.resource.plural if request.resource is not None else None
            if plural == SSAR.plural:
                review = request.data if isinstance(request.data, dict) \
                    else review_from_protobuf(request.body)
                return aiohttp.web.json_response(self.review(review), status=201)
            # Discovery paths (`/apis/apps/v1`) name no resource: kmock serves them.
            if plural and request.action is not None:
                self.authorize(request)
                if request.action == kmock.action.FETCH:
                    return aiohttp.web.json_response(self.fetch(request))
                if request.action == kmock.action.LIST:
                    return aiohttp.web.json_response(self.list(request))
                if request.action == kmock.action.UPDATE:
                    async with self._lock:
                        result = self.patch(request)
                    self.writes.append(self.write_record(request, 200))
                    return aiohttp.web.json_response(result)
                if request.method != 'GET':
                    raise Failure(405, 'MethodNotAllowed',
                                  f"{request.method} is not supported by this test API server")
        except Failure as failure:
            if request.method != 'GET':
                self.writes.append(self.write_record(request, failure.doc['code']))
            return aiohttp.web.json_response(failure.doc, status=failure.doc['code'])
        return await super()._handle(request)

    def write_record(self, request, code):
        return {
            'method': request.method,
            'path': request.url.path,
            'content_type': request.headers.get('Content-Type', ''),
            'body': request.data,
            'code': code,
        }

    def verb(self, request):
        return {
            kmock.action.FETCH: 'get',
            kmock.action.LIST: 'list',
            kmock.action.WATCH: 'watch',
            kmock.action.UPDATE: 'patch',
            kmock.action.CREATE: 'create',
            kmock.action.DELETE: 'delete',
        }.get(request.action, request.method.lower())

    def allowed(self, verb, plural, name):
        for rule in self.forbidden:
            rule_verb, _, target = rule.partition(':')
            rule_plural, _, rule_name = target.partition('/')
            if rule_verb in (verb, '*') and rule_plural == plural and rule_name in ('', name or ''):
                return False
        return True

    def authorize(self, request):
        verb = self.verb(request)
        resource = request.resource
        if not self.allowed(verb, resource.plural, request.name):
            what = f'{group_resource(resource)} "{request.name}"' if request.name \
                else group_resource(resource)
            raise Failure(
                403, 'Forbidden',
                f'{what} is forbidden: User "{USER}" cannot {verb} resource "{resource.plural}" '
                f'in API group "{resource.group}" in the namespace "{request.namespace}"',
                {'name': request.name or '', 'group': resource.group, 'kind': resource.plural},
            )

    def review(self, review):
        attrs = (review or {}).get('spec', {}).get('resourceAttributes', {})
        allowed = self.allowed(attrs.get('verb', ''), attrs.get('resource', ''), attrs.get('name'))
        answer = copy.deepcopy(review)
        answer.setdefault('metadata', {})['creationTimestamp'] = None
        answer['status'] = {'allowed': allowed}
        if not allowed:
            answer['status']['reason'] = 'forbidden by the test API server (--forbid)'
        return answer

    def key(self, request):
        """The stored object a request names: a real server serves every version of a
        resource from one stored object, so the version in the path does not matter."""
        for key in self.objects:
            resource, namespace, name = key
            if (resource.group, resource.plural, namespace, name) == (
                    request.resource.group, request.resource.plural, request.namespace,
                    request.name):
                return key
        return (request.resource, request.namespace, request.name)

    def as_requested(self, request, raw):
        raw = copy.deepcopy(raw)
        group, version = request.resource.group, request.resource.version
        raw['apiVersion'] = f'{group}/{version}' if group else version
        return raw

    def not_found(self, request):
        resource = request.resource
        return Failure(
            404, 'NotFound', f'{group_resource(resource)} "{request.name}" not found',
            {'name': request.name, 'group': resource.group, 'kind': resource.plural},
        )

    def fetch(self, request):
        key = self.key(request)
        if key not in self.objects or self.objects[key].deleted:
            raise self.not_found(request)
        return self.as_requested(request, self.objects[key].raw)

    def list(self, request):
        resource = request.resource
        kind = RESOURCES.get(resource.plural, (None, None, resource.plural.capitalize()))[2]
        items = [
            self.as_requested(request, obj.raw)
            for (res, namespace, _), obj in self.items(resource.plural)
            if res.group == resource.group and request.namespace in (None, namespace)
        ]
        return {
            'kind': f'{kind}List',
            'apiVersion': f'{resource.group}/{resource.version}'.lstrip('/'),
            'metadata': {'resourceVersion': str(self.revision)},
            'items': items,
        }

    def patch(self, request):
        key = self.key(request)
        if key not in self.objects or self.objects[key].deleted:
            raise self.not_found(request)
        target = f"{request.resource.plural}/{request.name}"
        if target in self.interfere:
            # Another client writes the object between the caller's read and its patch.
            self.interfere.discard(target)
            edited = copy.deepcopy(self.objects[key].raw)
            edited['metadata'].setdefault('annotations', {})['example.com/edited-by'] = 'someone-else'
            self.store(key, edited)
        before = copy.deepcopy(self.objects[key].raw)
        content_type = request.headers.get('Content-Type', '').split(';')[0].strip()
        try:
            if content_type == 'application/json-patch+json':
                if not isinstance(request.data, list):
                    raise Failure(400, 'BadRequest', 'a JSON patch must be an array of operations')
                after = dicts.patch_dict(copy.deepcopy(before), request.data)
            elif content_type == 'application/merge-patch+json':
                if not isinstance(request.data, dict):
                    raise Failure(400, 'BadRequest', 'a merge patch must be an object')
                after = dicts.patch_dict(copy.deepcopy(before), request.data)
            else:
                raise Failure(415, 'UnsupportedMediaType',
                              f'this test API server does not support {content_type} patches')
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
            # As the real server answers a JSON patch it cannot apply, a failed `test` included.
            raise Failure(422, 'Invalid', str(e))
        after = copy.deepcopy(dict(after))
        wanted_version = after.get('metadata', {}).get('resourceVersion')
        if wanted_version and wanted_version != before['metadata']['resourceVersion']:
            raise Failure(
                409, 'Conflict',
                f'Operation cannot be fulfilled on {group_resource(request.resource)} '
                f'"{request.name}": the object has been modified; please apply your changes to '
                'the latest version and try again',
                {'name': request.name, 'group': request.resource.group,
                 'kind': request.resource.plural},
            )
        after['metadata']['resourceVersion'] = before['metadata']['resourceVersion']
        if request.resource.plural == 'httproutes':
            self.admit_route(request, after)
        # `status` is a subresource: writes to the main resource leave it alone.
        if 'status' in before:
            after['status'] = before['status']
        else:
            after.pop('status', None)
        if after == before:
            return self.as_requested(request, before)
        if after.get('spec') != before.get('spec'):
            after['metadata']['generation'] = before['metadata'].get('generation', 1) + 1
        self.store(key, after)
        return self.as_requested(request, self.objects[key].raw)

    def admit_route(self, request, route):
        """The CRD's pruning, then its validation, as the real server does them before storing."""
        httproute_schema.prune(route, self.gateway_api)
        problems = httproute_schema.validate(route)
        if not problems:
            return
        listed = problems[0] if len(problems) == 1 else f"[{', '.join(problems)}]"
        raise Failure(
            422, 'Invalid',
            f'HTTPRoute.gateway.networking.k8s.io "{request.name}" is invalid: {listed}',
            {'name': request.name, 'group': 'gateway.networking.k8s.io', 'kind': 'HTTPRoute',
             'causes': [{'reason': 'FieldValueInvalid', 'message': p} for p in problems]},
        )

    def history(self):
        versions = []
        for (resource, namespace, name), obj in self.objects.items():
            for version in obj.history:
                if version is None:
                    continue
                raw = copy.deepcopy(dict(version.raw))
                versions.append({
                    'resource': resource.plural,
                    'namespace': namespace,
                    'name': name,
                    'resourceVersion': int(raw['metadata']['resourceVersion']),
                    'object': raw,
                })
        versions.sort(key=lambda v: v['resourceVersion'])
        return versions

    # ---- controllers -----------------------------------------------------------------------

    async def control(self):
        while True:
            async with self._lock:
                for key, obj in self.items('deployments'):
                    self.reconcile_deployment(key, obj)
                for key, obj in self.items('httproutes'):
                    self.reconcile_route(key, obj)
            await asyncio.sleep(TICK)

    def reconcile_deployment(self, key, obj):
        """One step of the Deployment controller, as seen from the Deployment's status."""
        raw = copy.deepcopy(obj.raw)
        spec, meta = raw.get('spec', {}), raw['metadata']
        status = raw.setdefault('status', {})
        desired = spec.get('replicas', 1)
        template = json.dumps(spec.get('template', {}), sort_keys=True)
        revision = hashlib.sha256(template.encode()).hexdigest()[:10]
        images = [c.get('image') for c in spec.get('template', {}).get('spec', {}).get('containers', [])]
        broken = any(image in self.never_ready for image in images)
        now = time.monotonic()
        state = self.pods.get(key)
        if state is None:
            # Pods that already exist: as many available ones as the seeded status says.
            ready = status.get('availableReplicas', 0)
            state = self.pods[key] = {
                'pods': [{'revision': revision, 'ready_at': now} for _ in range(ready)],
                'progress_at': now,
            }
        pods = state['pods']
        new = [p for p in pods if p['revision'] == revision]
        old = [p for p in pods if p['revision'] != revision]
        # maxSurge 25% (at least one): new pods are created in steps.
        surge = max(1, desired // 4)
        if len(new) < desired and len(pods) < desired + surge:
            pods.append({'revision': revision,
                         'ready_at': None if broken else now + self.pod_ready_after})
        elif len(new) > desired:
            # Scaling down deletes the surplus at once, not-ready pods first; pods being
            # deleted no longer count in status.
            new.sort(key=lambda p: p['ready_at'] is not None)
            for p in new[:len(new) - desired]:
                pods.remove(p)
        new = [p for p in pods if p['revision'] == revision]
        available_new = sum(1 for p in new if p['ready_at'] is not None and p['ready_at'] <= now)
        # Old pods go as new ones become available, and at once when the total shrinks.
        keep_old = max(0, min(len(old), desired - available_new))
        for p in old[keep_old:]:
            pods.remove(p)
        available = sum(1 for p in pods if p['ready_at'] is not None and p['ready_at'] <= now)
        counts = {
            'replicas': len(pods),
            'updatedReplicas': len(new),
            'readyReplicas': available,
            'availableReplicas': available,
        }
        previous = {k: status.get(k, 0) for k in counts}
        progressed = (
            counts['updatedReplicas'] > previous['updatedReplicas']
            or counts['availableReplicas'] > previous['availableReplicas']
            or counts['replicas'] < previous['replicas']
            or status.get('observedGeneration') != meta.get('generation')
        )
        if progressed:
            state['progress_at'] = now
        complete = (counts['updatedReplicas'] == desired and counts['replicas'] == desired
                    and counts['availableReplicas'] == desired)
        conditions = {c['type']: c for c in status.get('conditions', [])}
        max_unavailable = desired // 4
        self.set_condition(
            conditions, 'Available', available >= desired - max_unavailable,
            'MinimumReplicasAvailable' if available >= desired - max_unavailable
            else 'MinimumReplicasUnavailable',
            'Deployment has minimum availability.' if available >= desired - max_unavailable
            else 'Deployment does not have minimum availability.')
        deadline = spec.get('progressDeadlineSeconds', 600)
        name = meta['name']
        if complete:
            self.set_condition(conditions, 'Progressing', True, 'NewReplicaSetAvailable',
                               f'ReplicaSet "{name}-{revision}" has successfully progressed.')
        elif progressed:
            self.set_condition(conditions, 'Progressing', True, 'ReplicaSetUpdated',
                               f'ReplicaSet "{name}-{revision}" is progressing.', touch=True)
        elif now - state['progress_at'] > deadline:
            self.set_condition(conditions, 'Progressing', False, 'ProgressDeadlineExceeded',
                               f'ReplicaSet "{name}-{revision}" has timed out progressing.')
        new_status = dict(status)
        new_status.update(counts)
        new_status['observedGeneration'] = meta.get('generation', 1)
        if counts['availableReplicas'] < desired:
            new_status['unavailableReplicas'] = desired - counts['availableReplicas']
        else:
            new_status.pop('unavailableReplicas', None)
        new_status['conditions'] = sorted(conditions.values(), key=lambda c: c['type'])
        if new_status != obj.raw.get('status'):
            raw['status'] = new_status
            self.store(key, raw)

    @staticmethod
    def set_condition(conditions, kind, ok, reason, message, touch=False):
        value = 'True' if ok else 'False'
        current = conditions.get(kind)
        stamp = now_rfc3339()
        if current and current['status'] == value and current['reason'] == reason and not touch:
            return
        if current and current['status'] == value and current['reason'] == reason and touch \
                and current.get('lastUpdateTime') == stamp:
            return
        transition = stamp if not current or current['status'] != value \
            else current.get('lastTransitionTime', stamp)
        conditions[kind] = {
            'type': kind, 'status': value, 'lastUpdateTime': stamp,
            'lastTransitionTime': transition, 'reason': reason, 'message': message,
        }

    def reconcile_route(self, key, obj):
        raw = copy.deepcopy(obj.raw)
        generation = raw['metadata'].get('generation', 1)
        parents = raw.get('status', {}).get('parents', [])
        if all(all(c.get('observedGeneration') == generation for c in p.get('conditions', []))
               for p in parents):
            return
        services = {name for (_, namespace, name), _ in self.items('services')
                    if namespace == key[1]}
        resolved = all(name in services for name in httproute_schema.backend_names(raw))
        stamp = now_rfc3339()
        for parent in parents:
            parent['conditions'] = [
                {'type': 'Accepted', 'status': 'True', 'reason': 'Accepted',
                 'message': 'Route is accepted', 'observedGeneration': generation,
                 'lastTransitionTime': stamp},
                {'type': 'ResolvedRefs', 'status': 'True' if resolved else 'False',
                 'reason': 'ResolvedRefs' if resolved else 'BackendNotFound',
                 'message': 'All references resolved' if resolved
                 else 'A backendRef names a Service that does not exist',
                 'observedGeneration': generation, 'lastTransitionTime': stamp},
            ]
        self.store(key, raw)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--objects', required=True)
    parser.add_argument('--forbid', action='append', default=[])
    parser.add_argument('--never-ready', action='append', default=[])
    parser.add_argument('--pod-ready-after', type=float, default=0.3)
    parser.add_argument('--interfere', action='append', default=[])
    parser.add_argument('--gateway-api', default='v1.3')
    args = parser.parse_args()

    handler = Apiserver()
    handler.configure(args.forbid, set(args.never_ready), args.pod_ready_after, args.interfere,
                      args.gateway_api)
    with open(args.objects, encoding='utf-8') as f:
        for obj in json.load(f):
            handler.seed(obj)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)

    async with handler, kmock.Server(handler, host='127.0.0.1', port=0) as server:
        controller = asyncio.create_task(handler.control())
        print(f"listening 127.0.0.1:{server.port}", flush=True)
        await stop.wait()
        controller.cancel()


if __name__ == '__main__':
    asyncio.run(main())
