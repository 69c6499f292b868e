// Compiled with `tsc --noEmit --strict` by tests/api/test_client_types.py: the declarations of
// tokenwire.js and ai-sdk.js must type-check, and use them the way the README does.
import { TokenwireClient, type ChatStream } from "tokenwire";
import { cancelChat, tokenwireChatTransportOptions } from "tokenwire/ai-sdk";

async function example(token: string): Promise<string> {
  const client = new TokenwireClient({ baseUrl: "http://localhost:8000", getToken: () => token });
  const chat: ChatStream = await client.send(
    { messages: [{ role: "user", content: "Hello" }] },
    {
      onToken: (text: string) => void text,
      onState: (state) => void state,
      onError: (error) => void error.code,
    },
  );
  const result = await chat.done;
  const options = tokenwireChatTransportOptions({ baseUrl: "http://localhost:8000",
                                                 getToken: () => token });
  void options.api;
  await cancelChat({ baseUrl: "http://localhost:8000", chatId: "c", getToken: () => token });
  return result.text;
}
void example;
