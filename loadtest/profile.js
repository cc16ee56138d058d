// Replays the shape of a real traffic trace (`timestamp,requests`, as in ../shared/traces)
// against the storefront's gateway: arrival rate follows the trace, time-compressed, scaled
// so that the trace's busiest step becomes PEAK requests/s. Requests are catalogue reads
// (list, detail, search), the bulk of a storefront's traffic.
//
//   k6 run -e TRACE=../shared/traces/azure_functions_1day_1min.csv -e COMPRESS=288 -e PEAK=50 loadtest/profile.js
// COMPRESS=288 plays a day in 5 minutes. Stages are at least STAGE_SECONDS long (default 5).
// MIX=journeys replaces the catalogue reads by the user journeys of journeys.js (every
// service gets traffic shaped like the trace; logins are 2% of iterations).
import http from 'k6/http';
import { check } from 'k6';
import { setup as journeySetup, browse, search, recommend, book, order, profile } from './journeys.js';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const COMPRESS = Number(__ENV.COMPRESS || 288);
const PEAK = Number(__ENV.PEAK || 50);
const STAGE = Number(__ENV.STAGE_SECONDS || 5);

function stagesFrom(text) {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  if (lines[0].replace(/ /g, '') !== 'timestamp,requests') {
    throw new Error(`TRACE must start with the header timestamp,requests, not ${lines[0]}`);
  }
  const rows = lines.slice(1).map((l) => {
    const [ts, v] = l.split(',');
    return { t: Date.parse(ts) / 1000, v: v === '' || v === undefined ? null : Number(v) };
  });
  const step = rows[1].t - rows[0].t;
  const per = Math.max(1, Math.round((STAGE * COMPRESS) / step)); // trace rows per stage
  const buckets = [];
  for (let i = 0; i < rows.length; i += per) {
    const vals = rows.slice(i, i + per).map((r) => r.v).filter((v) => v !== null && !Number.isNaN(v));
    buckets.push(vals.length ? vals.reduce((a, b) => a + b, 0) / vals.length : null);
  }
  const max = Math.max(...buckets.filter((b) => b !== null));
  let last = 1;
  return buckets.map((b) => {
    // A missing stretch keeps the last rate: no data is not "no traffic".
    if (b !== null) last = Math.max(1, Math.round((b / max) * PEAK));
    return { target: last, duration: `${Math.round((per * step) / COMPRESS)}s` };
  });
}

const stages = stagesFrom(open(__ENV.TRACE || '../shared/traces/azure_functions_1day_1min.csv'));

export const options = {
  scenarios: {
    trace: {
      executor: 'ramping-arrival-rate',
      startRate: stages[0].target,
      timeUnit: '1s',
      preAllocatedVUs: Math.max(10, PEAK),
      maxVUs: PEAK * 4,
      stages,
    },
  },
  thresholds: { checks: ['rate>0.99'] },
};

const MIX = __ENV.MIX || 'catalogue';
if (MIX !== 'catalogue' && MIX !== 'journeys') throw new Error(`MIX must be catalogue or journeys, not ${MIX}`);

export function setup() {
  return MIX === 'journeys' ? journeySetup() : {};
}

// Logins spread over the setup's users, as real ones would be (authen limits attempts per
// user name).
function login(data) {
  const user = Math.floor(Math.random() * data.tokens.length);
  const creds = JSON.stringify({ username: `k6-${data.run}-${user}`, password: 'a long enough password' });
  const r = http.post(`${BASE}/api/authen/login`, creds, { headers: { 'Content-Type': 'application/json' } });
  check(r, { 'login 200': (x) => x.status === 200 });
}

function journey(data) {
  const token = data.tokens[Math.floor(Math.random() * data.tokens.length)];
  const roll = Math.random();
  if (roll < 0.35) browse();
  else if (roll < 0.55) search();
  else if (roll < 0.70) recommend(token);
  else if (roll < 0.80) book(token);
  else if (roll < 0.88) order(token, data.run);
  else if (roll < 0.98) profile(token);
  else login(data);
}

export default function (data) {
  if (MIX === 'journeys') return journey(data);
  const roll = Math.random();
  let r;
  if (roll < 0.6) r = http.get(`${BASE}/api/product/products?page=${1 + Math.floor(Math.random() * 25)}&per_page=20`);
  else if (roll < 0.9) r = http.get(`${BASE}/api/product/products/${1 + Math.floor(Math.random() * 500)}`);
  else r = http.get(`${BASE}/api/product/products/search?q=pro`);
  check(r, { 'status 200': (x) => x.status === 200 });
}
