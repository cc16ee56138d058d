// Storefront user journeys through the gateway, in realistic proportions:
// browse 40%, search 20%, recommendations 15%, book 10%, order 10%, profile 5%.
// Every journey logs in first (tokens from setup), checks its answers, and the run
// fails its thresholds if more than 1% of checks or requests fail.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e VUS=10 -e DURATION=1m loadtest/journeys.js
//
// BASE_URLS (comma-separated) spreads every request over several gateways at random, as
// replicas behind a load balancer would see it: a user registered through one logs in,
// books and orders through the others.
import http from 'k6/http';
import { check, sleep } from 'k6';

const BASES = (__ENV.BASE_URLS || __ENV.BASE_URL || 'http://127.0.0.1:8080').split(',').map((b) => b.trim()).filter((b) => b);
// A gateway per request (the one gateway unless BASE_URLS names several).
const api = () => `${BASES[Math.floor(Math.random() * BASES.length)]}/api`;
const USERS = Number(__ENV.USERS || 5);
const THINK = Number(__ENV.THINK_SECONDS || 0.2);

export const options = {
  vus: Number(__ENV.VUS || 5),
  duration: __ENV.DURATION || '30s',
  thresholds: {
    checks: ['rate>0.99'],
    http_req_failed: ['rate<0.01'],
    'http_req_duration{journey:browse}': ['p(95)<2000'],
  },
};

const json = { headers: { 'Content-Type': 'application/json' } };
const auth = (token, extra) => ({ headers: Object.assign({ Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, extra || {}) });

export function setup() {
  const run = Date.now().toString(36);
  const tokens = [];
  for (let i = 0; i < USERS; i++) {
    const creds = JSON.stringify({ username: `k6-${run}-${i}`, password: 'a long enough password' });
    const reg = http.post(`${api()}/authen/register`, creds, json);
    check(reg, { 'register 201': (r) => r.status === 201 });
    const login = http.post(`${api()}/authen/login`, creds, json);
    check(login, { 'login 200': (r) => r.status === 200 });
    tokens.push(login.json('token'));
  }
  return { tokens, run };
}

const pick = (n) => Math.floor(Math.random() * n);

export function browse() {
  const page = 1 + pick(20);
  const list = http.get(`${api()}/product/products?page=${page}&per_page=20`, { tags: { journey: 'browse' } });
  check(list, { 'list 200': (r) => r.status === 200 && r.json('items').length === 20 });
  const id = 1 + pick(500);
  const detail = http.get(`${api()}/product/products/${id}`, { tags: { journey: 'browse' } });
  check(detail, { 'detail 200': (r) => r.status === 200 && r.json('id') === id });
}

export function search() {
  const words = ['racket', 'shoe', 'ball', 'pro', 'trail', 'carbon', 'bottle'];
  const r = http.get(`${api()}/product/products/search?q=${words[pick(words.length)]}`, { tags: { journey: 'search' } });
  check(r, { 'search 200': (x) => x.status === 200 && x.json('total') > 0 });
}

export function recommend(token) {
  const r = http.get(`${api()}/recommender/recommendations/${1 + pick(60)}?limit=5`, Object.assign(auth(token), { tags: { journey: 'recommend' } }));
  check(r, { 'recommendations 200': (x) => x.status === 200 });
}

export function book(token) {
  const day = new Date(Date.now() + (1 + pick(300)) * 86400000).toISOString().slice(0, 10);
  const body = JSON.stringify({ facility_id: 1 + pick(6), date: day, hour: 8 + pick(14) });
  // A slot someone else took first is a normal answer (409), not a failure.
  const r = http.post(`${api()}/booking/bookings`, body, Object.assign(auth(token), {
    tags: { journey: 'book' },
    responseCallback: http.expectedStatuses(201, 409),
  }));
  check(r, { 'book 201 or 409': (x) => x.status === 201 || x.status === 409 });
}

export function order(token, run) {
  const key = `${run}-${__VU}-${__ITER}`;
  const items = [{ product_id: 1 + pick(49), quantity: 1 }, { product_id: 51 + pick(49), quantity: 1 }];
  const body = JSON.stringify({ items });
  const first = http.post(`${api()}/order/orders`, body, Object.assign(auth(token, { 'Idempotency-Key': key }), { tags: { journey: 'order' } }));
  check(first, { 'order 201': (r) => r.status === 201 });
  // A client retry with the same key gets the same order back.
  const retry = http.post(`${api()}/order/orders`, body, Object.assign(auth(token, { 'Idempotency-Key': key }), { tags: { journey: 'order' } }));
  check(retry, { 'retry returns the same order': (r) => r.status === 200 && r.json('id') === first.json('id') });
}

export function profile(token) {
  const r = http.get(`${api()}/profile/profile`, Object.assign(auth(token), { tags: { journey: 'profile' } }));
  check(r, { 'profile 200': (x) => x.status === 200 });
}

export default function (data) {
  const token = data.tokens[pick(data.tokens.length)];
  const roll = Math.random();
  if (roll < 0.40) browse();
  else if (roll < 0.60) search();
  else if (roll < 0.75) recommend(token);
  else if (roll < 0.85) book(token);
  else if (roll < 0.95) order(token, data.run);
  else profile(token);
  sleep(THINK);
}
