// The JSON API of objdet annotate (see objdet/annotate/app.py). Plain ES module.
let token = null;

async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (token) headers["X-Objdet-Token"] = token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 204) return null;
  const content = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(content.error || `${method} ${path}: HTTP ${response.status}`);
  return content;
}

export const api = {
  setToken(value) { token = value; },
  next(session) { return request("GET", `/api/next?session=${encodeURIComponent(session)}`); },
  task(taskId, session) { return request("GET", `/api/task/${taskId}?session=${encodeURIComponent(session)}`); },
  answer(body) { return request("POST", "/api/answer", body); },
  status(session) { return request("GET", session ? `/api/status?session=${encodeURIComponent(session)}` : "/api/status"); },
};
