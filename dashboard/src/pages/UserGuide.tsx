// The built-in user guide: the parts of the Alfred user guide a dashboard user needs
// while working (adapted to this gateway: Envoy at the same host, `alfred create-admin`).

const origin = typeof window === "undefined" ? "http://localhost:8000" : window.location.origin;

function Code({ children }: { children: string }) {
  return (
    <pre class="code">
      <code>{children}</code>
    </pre>
  );
}

export function UserGuide() {
  return (
    <div class="page guide" data-testid="page-guide">
      <header class="page-head">
        <h1>User Guide</h1>
      </header>
      <nav class="card toc" aria-label="Guide contents">
        <a href="#quick-start">Quick start</a>
        <a href="#users">User management</a>
        <a href="#api">Using the API</a>
        <a href="#quota">Checking your quota</a>
        <a href="#dashboard">Dashboard features</a>
        <a href="#troubleshooting">Troubleshooting</a>
      </nav>

      <section class="card" id="quick-start">
        <h2>Quick start</h2>
        <ol>
          <li>
            <strong>Log in</strong> with your API key (it starts with <code>tp-</code>). The dashboard keeps a short-lived session; log in
            again when it ends.
          </li>
          <li>
            <strong>Allocate credits</strong>: admins give each user a personal quota (tokens per period) under Manage Users.
          </li>
          <li>
            <strong>Monitor usage</strong> on the Overview (admins) or My Usage.
          </li>
        </ol>
        <p>The first admin is created on the server, which prints the admin's key once:</p>
        <Code>{`alfred create-admin --email admin@company.com --name "Admin User"`}</Code>
      </section>

      <section class="card" id="users">
        <h2>User management</h2>
        <p>
          In <em>Manage Users</em>, <em>Add User</em> asks for a name, email and quota. The new user's API key is displayed once — copy it
          and share it securely; it cannot be retrieved later (rotate the key to issue a new one).
        </p>
        <ul>
          <li>
            <strong>Active</strong>: normal operation.
          </li>
          <li>
            <strong>On vacation</strong>: shares quota with team members.
          </li>
          <li>
            <strong>Suspended</strong>: cannot make API requests (nor use the dashboard).
          </li>
        </ul>
        <p>The same through the API:</p>
        <Code>{`curl -X POST ${origin}/v1/admin/users \\
  -H "X-API-Key: your-admin-key" \\
  -H "Content-Type: application/json" \\
  -d '{"email": "user@company.com", "name": "New User", "personal_quota": 5000}'`}</Code>
      </section>

      <section class="card" id="api">
        <h2>Using the API</h2>
        <p>Keep your SDK; give it your Alfred key and point it at Alfred:</p>
        <Code>{`from openai import OpenAI

client = OpenAI(api_key="tp-your-api-key", base_url="${origin}/v1")
response = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Hello!"}],
)`}</Code>
        <table class="table compact">
          <thead>
            <tr>
              <th>Header</th>
              <th>Effect</th>
              <th>Example</th>
            </tr>
          </thead>
          <tbody>
            <tr>
              <td>
                <code>X-Privacy-Mode</code>
              </td>
              <td>No message content is captured or logged</td>
              <td>
                <code>X-Privacy-Mode: strict</code>
              </td>
            </tr>
            <tr>
              <td>
                <code>X-Priority</code>
              </td>
              <td>Priority of the request (critical may overdraw)</td>
              <td>
                <code>X-Priority: critical</code>
              </td>
            </tr>
            <tr>
              <td>
                <code>X-Project-ID</code>
              </td>
              <td>Counts the request to a project (see the Overview's projects)</td>
              <td>
                <code>X-Project-ID: project-123</code>
              </td>
            </tr>
          </tbody>
        </table>
      </section>

      <section class="card" id="quota">
        <h2>Checking your quota</h2>
        <Code>{`curl ${origin}/v1/users/me/quota -H "Authorization: Bearer tp-your-api-key"`}</Code>
        <Code>{`{"personal_quota": 10000, "used_tokens": 3500, "available_quota": 6500, "team_pool_available": 15000}`}</Code>
        <p>
          When the quota is spent, requests are refused with <code>429</code> (<code>insufficient_quota</code>) until the next period.
        </p>
      </section>

      <section class="card" id="dashboard">
        <h2>Dashboard features</h2>
        <ul>
          <li>
            <strong>Overview</strong> (admins): total users, token usage, cost trend over time, model breakdown, top users and projects.
          </li>
          <li>
            <strong>Manage Users</strong> (admins): all users with quota and usage; create, edit, delete, set vacation, admin
            privileges, rotate keys.
          </li>
          <li>
            <strong>My Usage</strong>: your quota and your own usage and cost.
          </li>
          <li>
            <strong>Dark mode</strong>: toggle it in the sidebar; the choice is remembered by this browser.
          </li>
        </ul>
        <p class="muted">Teams, credit reallocation and approvals screens arrive with team pools.</p>
      </section>

      <section class="card" id="troubleshooting">
        <h2>Troubleshooting</h2>
        <p>
          <strong>Cannot log in:</strong> make sure the key is correct (starts with <code>tp-</code>), the server is running, and the key
          has not been rotated or revoked. Suspended users cannot log in.
        </p>
        <p>
          <strong>Quota exceeded:</strong> check <code>GET /v1/users/me/quota</code>, ask an admin for more quota, or use{" "}
          <code>X-Priority: critical</code> for critical work.
        </p>
        <p>
          <strong>Logged out unexpectedly:</strong> sessions last an hour by default (<code>SESSION_TTL_SECONDS</code>) and end when
          your key is rotated.
        </p>
      </section>
    </div>
  );
}
