// An independent, certified OpenID provider (the npm package `oidc-provider`)
// on loopback, for the interoperability check driven by run.sh / drive.js.
//
// Environment:
//   INTEROP_PROVIDER_PORT   port on 127.0.0.1 (required)
//   INTEROP_CLIENT_ID       the one client's id (default "meetinity-interop")
//   INTEROP_CLIENT_SECRET   its secret (required)
//   INTEROP_REDIRECT_URI    its one redirect URI: Meetinity's callback (required)
//
// The client authenticates with client_secret_basic and may use PKCE (S256,
// advertised in discovery). Users sign in through oidc-provider's
// development interactions (a login form, then a consent form), which the
// driver submits like a browser would. Any login name is an account whose
// email is `<login>@interop.example`, verified.

import { generateKeyPairSync } from 'node:crypto';

import Provider from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`provider.js: ${name} is required`);
    process.exit(2);
  }
  return value;
}

const port = Number(required('INTEROP_PROVIDER_PORT'));
const issuer = `http://127.0.0.1:${port}`;
const clientId = process.env.INTEROP_CLIENT_ID || 'meetinity-interop';
const clientSecret = required('INTEROP_CLIENT_SECRET');
const redirectUri = required('INTEROP_REDIRECT_URI');

// A fresh RS256 signing key for this run.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'interop-1', alg: 'RS256', use: 'sig' };

const configuration = {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    },
  ],
  jwks: { keys: [signingKey] },
  // `openid email profile` and the claims they carry.
  scopes: ['openid', 'email', 'profile'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'locale'],
  },
  async findAccount(ctx, id) {
    const login = String(id).toLowerCase().replace(/[^a-z0-9._-]/g, '');
    return {
      accountId: login,
      async claims() {
        return {
          sub: login,
          email: `${login}@interop.example`,
          email_verified: true,
          name: `Interop ${login}`,
          locale: 'en-GB',
        };
      },
    };
  },
  // PKCE is required: the check fails if Meetinity does not send it.
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
  },
  cookies: { keys: [clientSecret] },
  ttl: { Session: 600, Interaction: 600, Grant: 600, AuthorizationCode: 60, AccessToken: 600, IdToken: 600 },
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (ctx, err) => console.error('provider.js: server_error', err));

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`provider.js: oidc-provider listening, issuer ${issuer}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
