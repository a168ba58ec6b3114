// The OpenID Connect provider of hardflow's OIDC end-to-end test: panva's oidc-provider (a
// certified OpenID Connect implementation, from the npm registry, pinned in package-lock.json)
// on a loopback port the kernel chooses. Run by tests/deploy/test_deploy_e2e_oidc.py.
//
// Everything comes from one JSON file named by the first argument (written by the test):
//   client_id, client_secret_file, redirect_uri   the one client (Airflow's API server)
//   users_file     {"login": {"password": ..., "groups": [...], "email": ...}}; read at every
//                  login and token, so the test moves a user between groups by rewriting it
//   key_file       the signing key (a private RSA JWK): created once, kept across restarts
//   mode           "normal" | "wrong-issuer" (the discovery document and the tokens name
//                  another issuer) | "expired" (ID tokens expire 9 minutes before they arrive:
//                  the clock the tokens are stamped with runs 10 minutes late) | the ID token
//                  of the token response re-signed: "resigned" (the same claims, the real key:
//                  the control), "other-audience" (aud names another client only, azp names
//                  this one: what Authlib alone lets through; the real key),
//                  "forged-signature" (the same claims, another key under the real key's kid;
//                  the JWKS still publishes the real key)
//   port           0 for one the kernel chooses; the bound port is printed as {"port": N}
// Logins check the password (no development interactions); consent is implied for the client.
import {
  createPrivateKey, generateKeyPairSync, randomBytes, sign, timingSafeEqual,
} from 'node:crypto';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const mode = settings.mode || 'normal';
const SCOPE = 'openid email profile groups';

if (mode === 'expired') {
  const realNow = Date.now;
  Date.now = () => realNow() - 600_000;
}

function users() {
  return JSON.parse(readFileSync(settings.users_file, 'utf8'));
}

function signingKey() {
  if (!existsSync(settings.key_file)) {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'),
      alg: 'RS256', use: 'sig' };
    writeFileSync(settings.key_file, JSON.stringify(jwk), { mode: 0o600 });
  }
  return JSON.parse(readFileSync(settings.key_file, 'utf8'));
}

const RESIGNED = new Set(['resigned', 'other-audience', 'forged-signature']);

// The ID token re-signed (RS256 by hand: node:crypto alone) as the mode asks.
function resign(idToken) {
  const [head, body] = idToken.split('.');
  const header = JSON.parse(Buffer.from(head, 'base64url').toString('utf8'));
  const claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  if (mode === 'other-audience') {
    claims.aud = [`${settings.client_id}-other`];
    claims.azp = settings.client_id;
  }
  let jwk = signingKey();
  if (mode === 'forged-signature') {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    jwk = { ...privateKey.export({ format: 'jwk' }), kid: jwk.kid };
  }
  const input = `${Buffer.from(JSON.stringify({ ...header, alg: 'RS256', kid: jwk.kid })).toString('base64url')}`
    + `.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const key = createPrivateKey({ key: { kty: jwk.kty, n: jwk.n, e: jwk.e, d: jwk.d, p: jwk.p,
    q: jwk.q, dp: jwk.dp, dq: jwk.dq, qi: jwk.qi }, format: 'jwk' });
  return `${input}.${sign('sha256', Buffer.from(input), key).toString('base64url')}`;
}

// The token endpoint's JSON answer with its id_token re-signed (before any header is sent).
function resignTokenResponse(res) {
  const chunks = [];
  const write = res.write.bind(res);
  const end = res.end.bind(res);
  res.write = (chunk) => { chunks.push(Buffer.from(chunk)); return true; };
  res.end = (chunk) => {
    if (chunk) chunks.push(Buffer.from(chunk));
    let out = Buffer.concat(chunks);
    try {
      const answer = JSON.parse(out.toString('utf8'));
      if (answer.id_token) {
        answer.id_token = resign(answer.id_token);
        out = Buffer.from(JSON.stringify(answer));
      }
    } catch { /* not JSON: an error answer, passed on as it is */ }
    if (!res.headersSent) res.setHeader('content-length', out.length);
    write(out);
    return end();
  };
}

function sameText(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && timingSafeEqual(x, y);
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, message) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Sign in</title></head><body>
<h1>Sign in</h1>${message ? `<p id="error">${escape(message)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<input id="login" name="login" type="text" required autofocus>
<input id="password" name="password" type="password" required>
<button id="submit" type="submit">Sign in</button></form></body></html>`;
}

async function formBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16384) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

const server = createServer();
server.listen(settings.port || 0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const advertised = mode === 'wrong-issuer' ? `${issuer}/not-the-configured-issuer` : issuer;
  const provider = new Provider(advertised, {
    clients: [{
      client_id: settings.client_id,
      client_secret: readFileSync(settings.client_secret_file, 'utf8').trim(),
      redirect_uris: [settings.redirect_uri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: [signingKey()] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    scopes: SCOPE.split(' '),
    features: { devInteractions: { enabled: false } },
    ttl: { IdToken: 60, AccessToken: 600, AuthorizationCode: 60, Interaction: 3600,
      Session: 3600, Grant: 3600 },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    // the client is first party: consent to the scopes it asks for is implied
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope(SCOPE);
      await grant.save();
      return grant;
    },
    async findAccount(ctx, id) {
      const user = users()[id];
      if (!user) return undefined;
      return {
        accountId: id,
        async claims() {
          const now = users()[id] || { groups: [] };  // the groups as they are now
          return { sub: id, preferred_username: id, name: id, email: now.email || `${id}@example.test`,
            email_verified: true, groups: now.groups || [] };
        },
      };
    },
  });
  const callback = provider.callback();
  server.on('request', async (req, res) => {
    const match = /^\/interaction\/([\w-]+)(\/login)?$/.exec(req.url.split('?')[0]);
    if (!match) {
      if (RESIGNED.has(mode) && req.method === 'POST' && req.url.split('?')[0] === '/token') {
        resignTokenResponse(res);
      }
      callback(req, res);
      return;
    }
    try {
      const details = await provider.interactionDetails(req, res);
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        res.end(loginPage(details.uid, ''));
        return;
      }
      const form = await formBody(req);
      const login = form.get('login') || '';
      const user = users()[login];
      if (!user || !sameText(user.password, form.get('password') || '')) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        res.end(loginPage(details.uid, 'Invalid login or password'));
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: login } },
        { mergeWithLastSubmission: false });
    } catch (err) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`interaction failed: ${err.message}`);
    }
  });
  process.stdout.write(`${JSON.stringify({ port, issuer, advertised })}\n`);
});
