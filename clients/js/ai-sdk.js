// tokenwire/ai-sdk: the AI SDK's DefaultChatTransport pointed at a tokenwire edge (ai >= 5).
//
// No build step, no dependencies: it returns options for the transport you already import,
//
//   new DefaultChatTransport(tokenwireChatTransportOptions({ baseUrl, getToken }))
//
// - `api` is the edge's POST /v1/ui/chat; `prepareReconnectToStreamRequest` its resume URL
//   (GET /v1/ui/chat/{id}/stream, what useChat({ resume: true }) calls on mount);
// - `fetch` adds `Authorization: Bearer <getToken()>` to every call, and turns the transport's
//   stop() into tokenwire's cancel: the SDK's stop only aborts the fetch, and the edge must not
//   take a dropped connection for a stop (the answer goes on, and a resume finds it), so when
//   the signal of a POST fires the wrapper POSTs /v1/ui/chat/{id}/cancel with `keepalive`
//   (it outlives a page that is closing). Aborting a resume (GET) does not cancel: the SDK also
//   aborts a resume when it starts another one (React's strict mode mounts twice). Call
//   `cancelChat` for a Stop button shown over a resumed answer.

const CHAT_PATH = "/v1/ui/chat";
const REQUEST_ID_HEADER = "x-tokenwire-request-id";

function trimmed(baseUrl) {
  return String(baseUrl ?? "").replace(/\/+$/, "");
}

async function authorization(getToken) {
  if (getToken == null) return null;
  const token = typeof getToken === "function" ? await getToken() : getToken;
  return token ? `Bearer ${token}` : null;
}

function chatIdOf(init) {
  try {
    const body = typeof init.body === "string" ? JSON.parse(init.body) : null;
    return typeof body?.id === "string" ? body.id : null;
  } catch {
    return null;
  }
}

/** POST /v1/ui/chat/{chatId}/cancel: stop the chat's answer (`requestId` if known, else the
 * chat's active one). Resolves to the edge's JSON answer; 409 means it had already ended. */
export async function cancelChat({ baseUrl = "", chatId, requestId, getToken,
                                   fetch: baseFetch = globalThis.fetch, keepalive = false }) {
  const headers = { "content-type": "application/json" };
  const auth = await authorization(getToken);
  if (auth) headers.authorization = auth;
  const response = await baseFetch(
    `${trimmed(baseUrl)}${CHAT_PATH}/${encodeURIComponent(chatId)}/cancel`,
    {
      method: "POST", headers, keepalive,
      body: JSON.stringify(requestId ? { request_id: requestId } : {}),
    },
  );
  return { status: response.status, body: await response.json().catch(() => null) };
}

/** Options for `new DefaultChatTransport(...)` (or `useChat({ transport })`) against a
 * tokenwire edge. Other transport options (body, headers, credentials) can be spread in. */
export function tokenwireChatTransportOptions({ baseUrl = "", getToken,
                                               fetch: baseFetch = globalThis.fetch,
                                               onCancelError } = {}) {
  const api = `${trimmed(baseUrl)}${CHAT_PATH}`;

  async function tokenwireFetch(input, init = {}) {
    const headers = new Headers(init.headers);
    const auth = await authorization(getToken);
    if (auth) headers.set("authorization", auth);
    const isSend = (init.method ?? "GET").toUpperCase() === "POST";
    const chatId = isSend ? chatIdOf(init) : null;
    const signal = init.signal;
    if (!isSend || chatId == null || signal == null) {
      return baseFetch(input, { ...init, headers });
    }
    let requestId = null;
    const stop = () => {
      cancelChat({ baseUrl, chatId, requestId, getToken, fetch: baseFetch, keepalive: true })
        .catch((error) => onCancelError?.(error));
    };
    if (signal.aborted) return baseFetch(input, { ...init, headers });
    signal.addEventListener("abort", stop, { once: true });
    const release = () => signal.removeEventListener("abort", stop);
    let response;
    try {
      response = await baseFetch(input, { ...init, headers });
    } catch (error) {
      if (!signal.aborted) release();
      throw error;
    }
    requestId = response.headers.get(REQUEST_ID_HEADER);
    if (!response.ok || response.body == null) {
      release();
      return response;
    }
    // Once the answer has ended, a later abort stops nothing: the listener goes with the body.
    const body = response.body.pipeThrough(new TransformStream({ flush: release }));
    return new Response(body, {
      status: response.status, statusText: response.statusText, headers: response.headers,
    });
  }

  return {
    api,
    fetch: tokenwireFetch,
    prepareReconnectToStreamRequest: ({ id }) => ({
      api: `${api}/${encodeURIComponent(id)}/stream`,
    }),
  };
}
