"""What a real API server checks on an HTTPRoute's rules, from the Gateway API's CRD.

The CRD's OpenAPI schema (types, enums, minimum/maximum, maxItems, list-map keys) and its CEL
rules (`x-kubernetes-validations`) for the parts of a route rollout writes: rules, matches
(path, method, headers), filters (RequestMirror in full, the type/field pairing of the others)
and backendRefs. Messages are worded as the API server words them, field paths included, so a
test sees what `kubectl` would print. Not covered: hostnames, parentRefs, query params, timeouts,
the inner fields of filters other than RequestMirror.

`prune(route, version)`: the CRDs of Gateway API v1.1 and earlier have no `percent` or
`fraction` in a RequestMirror filter; an API server with those CRDs drops unknown fields
(structural pruning) without an error, which `--gateway-api v1.1` reproduces.
"""

import re

MAX_RULES = 16
MAX_MATCHES_PER_RULE = 64
MAX_MATCHES = 128
MAX_HEADERS = 16
MAX_FILTERS = 16
METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
FILTER_FIELDS = {
    'RequestHeaderModifier': 'requestHeaderModifier',
    'ResponseHeaderModifier': 'responseHeaderModifier',
    'RequestMirror': 'requestMirror',
    'RequestRedirect': 'requestRedirect',
    'URLRewrite': 'urlRewrite',
    'ExtensionRef': 'extensionRef',
}
# Filters that a rule may hold once only (CEL on `filters`).
UNIQUE_FILTERS = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect',
                  'URLRewrite']


def quoted(values):
    return ', '.join(f'"{v}"' for v in values)


def validate(route):
    """Every problem a real API server would report for this route, as it words them."""
    problems = []
    rules = route.get('spec', {}).get('rules', [])
    if len(rules) > MAX_RULES:
        problems.append(f'spec.rules: Too many: {len(rules)}: must have at most {MAX_RULES} items')
    total = sum(len(r.get('matches') or [{}]) for r in rules)
    if total > MAX_MATCHES:
        problems.append(
            'spec: Invalid value: "object": While 16 rules and 64 matches per rule are allowed, '
            'the total number of matches across all rules in a route must be less than 128')
    for i, rule in enumerate(rules):
        problems += rule_problems(f'spec.rules[{i}]', rule)
    return problems


def rule_problems(at, rule):
    problems = []
    matches = rule.get('matches', [])
    if len(matches) > MAX_MATCHES_PER_RULE:
        problems.append(f'{at}.matches: Too many: {len(matches)}: must have at most '
                        f'{MAX_MATCHES_PER_RULE} items')
    for j, match in enumerate(matches):
        problems += match_problems(f'{at}.matches[{j}]', match)
    filters = rule.get('filters', [])
    if len(filters) > MAX_FILTERS:
        problems.append(f'{at}.filters: Too many: {len(filters)}: must have at most '
                        f'{MAX_FILTERS} items')
    for kind in UNIQUE_FILTERS:
        if sum(1 for f in filters if f.get('type') == kind) > 1:
            problems.append(f'{at}.filters: Invalid value: "array": {kind} filter cannot be '
                            'repeated')
    for j, f in enumerate(filters):
        problems += filter_problems(f'{at}.filters[{j}]', f)
    for j, ref in enumerate(rule.get('backendRefs', [])):
        problems += backend_ref_problems(f'{at}.backendRefs[{j}]', ref)
        weight = ref.get('weight', 1)
        if not isinstance(weight, int) or not 0 <= weight <= 1000000:
            problems.append(f'{at}.backendRefs[{j}].weight: Invalid value: {weight}: '
                            f'{at}.backendRefs[{j}].weight in body should be less than or '
                            'equal to 1000000')
    return problems


def match_problems(at, match):
    problems = []
    method = match.get('method')
    if method is not None and method not in METHODS:
        problems.append(f'{at}.method: Unsupported value: "{method}": supported values: '
                        f'{quoted(METHODS)}')
    headers = match.get('headers', [])
    if len(headers) > MAX_HEADERS:
        problems.append(f'{at}.headers: Too many: {len(headers)}: must have at most '
                        f'{MAX_HEADERS} items')
    seen = set()
    for k, header in enumerate(headers):
        here = f'{at}.headers[{k}]'
        name, value = header.get('name'), header.get('value')
        if name is None:
            problems.append(f'{here}.name: Required value')
        elif not HEADER_NAME.match(name):
            problems.append(f'{here}.name: Invalid value: "{name}": {here}.name in body should '
                            "match '^[A-Za-z0-9!#$%&'*+\\-.^_\\x60|~]+$'")
        elif name in seen:
            # A list-map keyed by name: the server compares keys as they are written.
            problems.append(f'{here}: Duplicate value: map[string]interface {{}}{{"name":"{name}"}}')
        else:
            seen.add(name)
        if value is None:
            problems.append(f'{here}.value: Required value')
        elif not 1 <= len(value) <= 4096:
            problems.append(f'{here}.value: Invalid value: "": {here}.value in body should be '
                            'at least 1 chars long')
        kind = header.get('type', 'Exact')
        if kind not in ('Exact', 'RegularExpression'):
            problems.append(f'{here}.type: Unsupported value: "{kind}": supported values: '
                            '"Exact", "RegularExpression"')
    return problems


def filter_problems(at, f):
    problems = []
    kind = f.get('type')
    if kind not in FILTER_FIELDS:
        return [f'{at}.type: Unsupported value: "{kind}": supported values: '
                f'{quoted(FILTER_FIELDS)}']
    for other_kind, field in FILTER_FIELDS.items():
        if field in f and other_kind != kind:
            problems.append(f'{at}: Invalid value: "object": filter.{field} must be nil if the '
                            f'filter.type is not {other_kind}')
    field = FILTER_FIELDS[kind]
    if field not in f:
        problems.append(f'{at}: Invalid value: "object": filter.{field} must be specified for '
                        f'{kind} filter.type')
    if kind == 'RequestMirror' and isinstance(f.get('requestMirror'), dict):
        problems += mirror_problems(f'{at}.requestMirror', f['requestMirror'])
    return problems


def mirror_problems(at, mirror):
    problems = []
    if 'backendRef' not in mirror:
        problems.append(f'{at}.backendRef: Required value')
    else:
        problems += backend_ref_problems(f'{at}.backendRef', mirror['backendRef'])
    if 'percent' in mirror and 'fraction' in mirror:
        problems.append(f'{at}: Invalid value: "object": Only one of percent or fraction may be '
                        'specified in HTTPRequestMirrorFilter')
    percent = mirror.get('percent')
    if percent is not None and (not isinstance(percent, int) or not 0 <= percent <= 100):
        problems.append(f'{at}.percent: Invalid value: {percent}: {at}.percent in body should '
                        'be less than or equal to 100')
    fraction = mirror.get('fraction')
    if fraction is not None:
        numerator = fraction.get('numerator')
        denominator = fraction.get('denominator', 100)
        if not isinstance(numerator, int) or numerator < 0:
            problems.append(f'{at}.fraction.numerator: Invalid value: {numerator}: '
                            f'{at}.fraction.numerator in body should be greater than or equal '
                            'to 0')
        elif not isinstance(denominator, int) or denominator < 1:
            problems.append(f'{at}.fraction.denominator: Invalid value: {denominator}: '
                            f'{at}.fraction.denominator in body should be greater than or '
                            'equal to 1')
        elif numerator > denominator:
            problems.append(f'{at}.fraction: Invalid value: "object": numerator must be less '
                            'than or equal to denominator')
    return problems


def backend_ref_problems(at, ref):
    problems = []
    if not ref.get('name'):
        problems.append(f'{at}.name: Required value')
    service = ref.get('group', '') == '' and ref.get('kind', 'Service') == 'Service'
    if service and 'port' not in ref:
        problems.append(f'{at}: Invalid value: "object": Must have port for Service reference')
    return problems


def prune(route, version):
    """Drops what the CRDs of `version` do not know, as a structural schema's pruning does."""
    if version not in ('v1.0', 'v1.1'):
        return
    for rule in route.get('spec', {}).get('rules', []):
        for f in rule.get('filters', []):
            mirror = f.get('requestMirror')
            if isinstance(mirror, dict):
                mirror.pop('percent', None)
                mirror.pop('fraction', None)


def backend_names(route):
    """Every Service a route names: its backendRefs' and its mirrors'."""
    names = []
    for rule in route.get('spec', {}).get('rules', []):
        names += [ref['name'] for ref in rule.get('backendRefs', [])]
        for f in rule.get('filters', []):
            mirror = f.get('requestMirror')
            if isinstance(mirror, dict) and 'backendRef' in mirror:
                names.append(mirror['backendRef'].get('name'))
    return names
