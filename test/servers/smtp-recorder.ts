import type { AddressInfo, Socket } from "node:net";
import { SMTPServer } from "smtp-server";

export interface RecordedMail {
  /** envelope sender */
  from: string;
  /** envelope recipients */
  to: string[];
  /** the message exactly as received after DATA; parse it with mailparser */
  raw: Buffer;
  /** the authenticated user, when the client logged in */
  user?: string;
}

export interface SmtpRecorderOptions {
  /** require this login (PLAIN/LOGIN over the plain connection, as a local relay would allow) */
  auth?: { user: string; pass: string };
  /** answer RCPT TO with 550 for these addresses, or for every address when `true` */
  rejectRecipients?: boolean | string[];
  /** the reply refused recipients get instead of `550 No such user here`, e.g. `554 5.7.1 Relay access denied` */
  rejectReply?: string;
  /** cut every connection before the greeting, like a relay that is going down */
  dropConnections?: boolean;
  /** implicit TLS (smtps) with smtp-server's bundled self-signed certificate */
  secure?: boolean;
  /** hold the answer to DATA this long, like a remote relay over TLS or one scanning the body */
  dataDelayMs?: number;
}

export interface SmtpRecorder {
  readonly port: number;
  /** the most messages that were between DATA and its answer at once */
  readonly mostInData: number;
  /** `smtp://user:pass@127.0.0.1:<port>` (or `smtps://`), credentials included when auth is set */
  readonly url: string;
  readonly messages: RecordedMail[];
  /** how many SMTP sessions were opened so far (pooling keeps this low) */
  connections(): number;
  close(): Promise<void>;
}

/**
 * A loopback SMTP server that records what it receives, like kratos `newRecordingSMTPServer`:
 * tests send through the real wire protocol and read the message back.
 */
export async function startSmtpRecorder(options: SmtpRecorderOptions = {}): Promise<SmtpRecorder> {
  const messages: RecordedMail[] = [];
  let connections = 0;
  let inData = 0;
  let mostInData = 0;
  const { auth, rejectRecipients = false } = options;

  const server = new SMTPServer({
    secure: options.secure ?? false,
    // No STARTTLS: the bundled certificate would fail verification, and the tests are about
    // the message, not the transport security of a loopback socket.
    disabledCommands: auth ? ["STARTTLS"] : ["STARTTLS", "AUTH"],
    authOptional: auth === undefined,
    allowInsecureAuth: true,
    disableReverseLookup: true,
    // The tests close their senders first; never hold a test's cleanup for straggling sockets.
    closeTimeout: 100,
    logger: false,
    onConnect(_session, callback) {
      connections += 1;
      callback();
    },
    onAuth(credentials, _session, callback) {
      if (auth && credentials.username === auth.user && credentials.password === auth.pass) {
        callback(null, { user: credentials.username });
        return;
      }
      callback(new Error("Invalid username or password"));
    },
    onRcptTo(address, _session, callback) {
      const refused =
        rejectRecipients === true ||
        (Array.isArray(rejectRecipients) && rejectRecipients.includes(address.address));
      if (refused) {
        const [, code = "550", text = "No such user here"] =
          /^(\d{3}) (.*)$/.exec(options.rejectReply ?? "") ?? [];
        callback(Object.assign(new Error(text), { responseCode: Number(code) }));
        return;
      }
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        const from = session.envelope.mailFrom;
        messages.push({
          from: from ? from.address : "",
          to: session.envelope.rcptTo.map((recipient) => recipient.address),
          raw: Buffer.concat(chunks),
          ...(typeof session.user === "string" ? { user: session.user } : {}),
        });
        inData += 1;
        mostInData = Math.max(mostInData, inData);
        setTimeout(() => {
          inData -= 1;
          callback();
        }, options.dataDelayMs ?? 0);
      });
    },
  });

  if (options.dropConnections) {
    // Runs alongside smtp-server's own listener, so the socket dies before any greeting.
    server.server.on("connection", (socket: Socket) => socket.destroy());
  }

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.server.address() as AddressInfo;
  const scheme = options.secure ? "smtps" : "smtp";
  const credentials = auth ? `${encodeURIComponent(auth.user)}:${encodeURIComponent(auth.pass)}@` : "";

  return {
    port,
    get mostInData() {
      return mostInData;
    },
    url: `${scheme}://${credentials}127.0.0.1:${port}`,
    messages,
    connections: () => connections,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
