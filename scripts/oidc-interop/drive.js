// Drives one full login through Meetinity Auth and oidc-provider, like a
// browser would, with Node's fetch: start the login, follow the provider's
// redirects, submit its login and consent interactions with its cookies,
// take the redirect back to Meetinity's callback, call it, then check the
// resulting access token with POST /auth/verify and GET /auth/profile.
//
// Environment: MEETINITY_URL (e.g. http://127.0.0.1:5099), PROVIDER_NAME
// (e.g. interop), INTEROP_ISSUER, INTEROP_LOGIN (the account to sign in as).
// Exits 0 when every check passed, 1 otherwise; prints each step.

const base = process.env.MEETINITY_URL;
const providerName = process.env.PROVIDER_NAME || 'interop';
const issuer = process.env.INTEROP_ISSUER;
const loginName = process.env.INTEROP_LOGIN || 'ada';
const STEP_TIMEOUT_MS = 10_000;

let failures = 0;
function check(ok, what, detail) {
  if (ok) {
    console.log(`  ok   ${what}`);
  } else {
    failures += 1;
    console.log(`  FAIL ${what}${detail === undefined ? '' : `: ${detail}`}`);
  }
  return ok;
}

class Fatal extends Error {}
function must(ok, what, detail) {
  if (!check(ok, what, detail)) throw new Fatal(what);
}

// A minimal cookie jar for the provider's origin (its cookies are host-only).
const jar = new Map();
function storeCookies(res) {
  for (const header of res.headers.getSetCookie()) {
    const [pair, ...attrs] = header.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const expired = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a))
      || attrs.some((a) => /^\s*expires=Thu, 01 Jan 1970/i.test(a));
    if (expired || value === '') jar.delete(name);
    else jar.set(name, value);
  }
}
function cookieHeader() {
  return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
}

async function request(url, init = {}) {
  const headers = { ...(init.headers || {}) };
  if (url.startsWith(issuer) && jar.size) headers.cookie = cookieHeader();
  const res = await fetch(url, {
    ...init,
    headers,
    redirect: 'manual',
    signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  });
  if (url.startsWith(issuer)) storeCookies(res);
  return res;
}

function decodeEntities(s) {
  return s.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#x2F;/g, '/').replace(/&#47;/g, '/');
}

// The first form of an HTML page: its action and its inputs' names/values.
function parseForm(html, pageUrl) {
  const form = html.match(/<form\b[^>]*\baction="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i);
  if (!form) return null;
  const fields = {};
  for (const input of form[2].matchAll(/<input\b[^>]*>/gi)) {
    const name = input[0].match(/\bname="([^"]*)"/i);
    const value = input[0].match(/\bvalue="([^"]*)"/i);
    if (name) fields[decodeEntities(name[1])] = value ? decodeEntities(value[1]) : '';
  }
  return { action: new URL(decodeEntities(form[1]), pageUrl).toString(), fields };
}

async function main() {
  console.log(`interop: Meetinity ${base}, provider \`${providerName}\` at ${issuer}`);

  // 1. Start the login as a browser (Origin header): we get the auth URL and
  //    the flow-binding cookie.
  let res = await fetch(`${base}/auth/${providerName}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: 'http://127.0.0.1' },
    body: '{}',
    signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  });
  let body = await res.json();
  must(res.status === 200, `POST /auth/${providerName} answers 200`, `${res.status} ${JSON.stringify(body)}`);
  const flowCookie = res.headers.getSetCookie().find((c) => c.startsWith('mt_flow='));
  must(Boolean(flowCookie), 'the start sets the mt_flow binding cookie', res.headers.getSetCookie());
  const binding = flowCookie.split(';')[0];
  const authUrl = new URL(body.auth_url);
  check(authUrl.searchParams.get('code_challenge_method') === 'S256', 'the authorization request carries a PKCE S256 challenge');
  check(Boolean(authUrl.searchParams.get('nonce')), 'the authorization request carries a nonce');
  check(authUrl.searchParams.get('state') === body.state, 'the state in auth_url is the one returned');
  must(authUrl.toString().startsWith(`${issuer}/`), 'auth_url points at the provider', authUrl.toString());

  // 2. Follow the provider until it redirects back to Meetinity, submitting
  //    the login and consent interactions on the way.
  let url = authUrl.toString();
  let callbackUrl = null;
  const seen = [];
  for (let hop = 0; hop < 12 && !callbackUrl; hop += 1) {
    res = await request(url);
    if (res.status >= 300 && res.status < 400) {
      const next = new URL(res.headers.get('location'), url).toString();
      await res.arrayBuffer();
      if (!next.startsWith(issuer)) {
        callbackUrl = next;
        break;
      }
      url = next;
      continue;
    }
    const html = await res.text();
    must(res.status === 200, `provider page ${new URL(url).pathname} answers 200`, `${res.status} ${html.slice(0, 300)}`);
    const form = parseForm(html, url);
    must(form !== null, `provider page ${new URL(url).pathname} has a form`, html.slice(0, 300));
    const prompt = form.fields.prompt;
    seen.push(prompt);
    if (prompt === 'login') {
      form.fields.login = loginName;
      form.fields.password = 'any password';
    }
    res = await request(form.action, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form.fields).toString(),
    });
    await res.arrayBuffer();
    must(res.status >= 300 && res.status < 400, `the ${prompt} interaction is accepted`, res.status);
    url = new URL(res.headers.get('location'), form.action).toString();
  }
  check(seen.includes('login'), 'the login interaction was submitted', seen);
  check(seen.includes('consent'), 'the consent interaction was submitted', seen);
  must(Boolean(callbackUrl), 'the provider redirects back to Meetinity');
  const cb = new URL(callbackUrl);
  must(cb.pathname === `/auth/${providerName}/callback`, 'the redirect is Meetinity\'s callback', callbackUrl);
  check(cb.searchParams.get('iss') === issuer, 'the authorization response carries iss (RFC 9207)', cb.searchParams.get('iss'));
  must(Boolean(cb.searchParams.get('code')), 'the authorization response carries a code', callbackUrl);

  // 3. The callback, with the browser's binding cookie.
  res = await fetch(`${base}${cb.pathname}${cb.search}`, {
    headers: { cookie: binding },
    signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  });
  body = await res.json();
  must(res.status === 200, 'the callback answers 200 with a token set', `${res.status} ${JSON.stringify(body)}`);
  check(body.token_type === 'Bearer', 'token_type is Bearer', body.token_type);
  check(Number.isInteger(body.expires_in) && body.expires_in > 0, 'expires_in is positive', body.expires_in);
  check(typeof body.refresh_token === 'string' && body.refresh_token.length >= 32, 'a refresh token is returned');
  const email = `${loginName}@interop.example`;
  check(body.user?.email === email, `the user is ${email}`, body.user?.email);
  check(body.user?.email_verified === true, 'the email is verified by the provider');
  const accounts = (body.user?.social_accounts || []).map((a) => a.provider);
  check(accounts.includes(providerName), `the user has a \`${providerName}\` social account`, accounts);

  // 4. The same callback again: the state is single use.
  res = await fetch(`${base}${cb.pathname}${cb.search}`, {
    headers: { cookie: binding },
    signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  });
  const replay = await res.json();
  check(res.status === 401 && replay.error?.reason === 'invalid_state', 'a replayed callback is 401 invalid_state', `${res.status} ${JSON.stringify(replay)}`);

  // 5. The access token works.
  res = await fetch(`${base}/auth/verify`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: body.token }),
    signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  });
  const verified = await res.json();
  check(res.status === 200 && verified.valid === true, 'POST /auth/verify: valid', `${res.status} ${JSON.stringify(verified)}`);
  check(verified.sub === body.user?.id, 'the token\'s sub is the user id', verified.sub);
  res = await fetch(`${base}/auth/profile`, {
    headers: { authorization: `Bearer ${body.token}` },
    signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  });
  const me = await res.json();
  check(res.status === 200 && me.user?.email === email, 'GET /auth/profile returns the user', `${res.status} ${JSON.stringify(me)}`);
  check(me.user?.name === `Interop ${loginName}`, 'the profile name came from the provider', me.user?.name);
}

try {
  await main();
} catch (e) {
  if (!(e instanceof Fatal)) {
    failures += 1;
    console.log(`  FAIL ${e?.name === 'TimeoutError' ? 'a request timed out' : 'unexpected error'}: ${e?.stack || e}`);
  }
}
process.exit(failures === 0 ? 0 : 1);
