// Types of tokenwire/ai-sdk: DefaultChatTransport options for a tokenwire edge (ai >= 5).

/** A bearer credential (JWT or API key), or a function giving a fresh one per call. */
export type TokenSource = string | null | undefined | (() => string | null | undefined |
  Promise<string | null | undefined>);

export interface TokenwireTransportConfig {
  /** The edge's origin, e.g. "http://localhost:8000" ("" = same origin). */
  baseUrl?: string;
  getToken?: TokenSource;
  /** The fetch to wrap (default: globalThis.fetch). */
  fetch?: typeof fetch;
  /** Called when the cancel a stop() sends fails (it is sent in the background). */
  onCancelError?: (error: unknown) => void;
}

/** Spread into `new DefaultChatTransport({...})`: `api`, an authorising `fetch` whose POST
 * aborts (the transport's stop()) cancel the answer, and the resume URL. */
export interface TokenwireTransportOptions {
  api: string;
  fetch: typeof fetch;
  prepareReconnectToStreamRequest: (options: { id: string }) => { api: string };
}

export function tokenwireChatTransportOptions(
  config?: TokenwireTransportConfig,
): TokenwireTransportOptions;

export interface CancelChatOptions {
  baseUrl?: string;
  chatId: string;
  /** The request to stop (the x-tokenwire-request-id of its response); default: the active one. */
  requestId?: string | null;
  getToken?: TokenSource;
  fetch?: typeof fetch;
  keepalive?: boolean;
}

/** POST /v1/ui/chat/{chatId}/cancel. Status 202: cancelling; 409: it had already ended. */
export function cancelChat(options: CancelChatOptions): Promise<{ status: number; body: unknown }>;
