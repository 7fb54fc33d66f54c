// Evaluates an Unleash flag the way an application does: unleash-client-node's own isEnabled,
// fed by the server's client API, for many user ids.
//
//   node evaluate.mjs URL BACKEND_TOKEN FLAG OUT_JSON [--disabled] [--users N]
//
// First waits (up to 20 s) until the client API serves the state rollout just set: the flag
// enabled with rollout's share at $ROLLOUT_WEIGHT percent, or disabled with --disabled. `{stage}`
// in OUT_JSON is replaced with $ROLLOUT_STAGE (the script runs as a stage hook). Writes the user
// numbers that get the flag, and the staff users (one in ten: email @example.com).
import { writeFileSync } from 'node:fs';
import { startUnleash } from 'unleash-client';

const [url, token, flag, outArg] = process.argv.slice(2);
const arg = (name) => process.argv.includes(name);
const users = arg('--users') ? Number(process.argv[process.argv.indexOf('--users') + 1]) : 10000;
const out = outArg.replace('{stage}', process.env.ROLLOUT_STAGE ?? '');
const weight = process.env.ROLLOUT_WEIGHT;

async function served() {
  const res = await fetch(`${url}/api/client/features`, {
    headers: { Authorization: token },
    signal: AbortSignal.timeout(5000),
  });
  const body = await res.json();
  const f = body.features.find((x) => x.name === flag);
  if (!f) return false;
  if (arg('--disabled')) return !f.enabled;
  const share = f.strategies.find((s) => s.parameters?.groupId === flag && (s.constraints ?? []).length === 0);
  return f.enabled && share && share.parameters.rollout === weight;
}

const deadline = Date.now() + 20000;
while (!(await served())) {
  if (Date.now() > deadline) {
    console.error(`the client API never served ${flag} as expected`);
    process.exit(2);
  }
  await new Promise((r) => setTimeout(r, 50));
}
const unleash = await startUnleash({
  appName: 'rollout-test',
  url: `${url}/api/`,
  customHeaders: { Authorization: token },
  disableMetrics: true,
});
const email = (i) => (i % 10 === 0 ? `user-${i}@example.com` : `user-${i}@mail.test`);
const on = [];
for (let i = 0; i < users; i++) {
  if (unleash.isEnabled(flag, { userId: `user-${i}`, properties: { email: email(i) } })) on.push(i);
}
unleash.destroy();
const staff = [];
for (let i = 0; i < users; i += 10) staff.push(i);
writeFileSync(out, JSON.stringify({ users, on, staff }));
process.exit(0);
