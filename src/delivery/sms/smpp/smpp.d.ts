// The `smpp` package ships no types; this declares the part verifyd and its fake SMSC use.
declare module "smpp" {
  import type { EventEmitter } from "node:events";
  import type { Server as NetServer, Socket } from "node:net";

  namespace smpp {
    /** PDU fields by their SMPP names (`system_id`, `short_message`, TLVs such as `message_payload`). */
    type PduFields = Record<string, unknown>;

    class PDU {
      constructor(command: string, fields?: PduFields);
      readonly command: string;
      command_status: number;
      sequence_number: number;
      /** decoded fields arrive untyped: check each before use */
      [field: string]: unknown;
      isResponse(): boolean;
      response(fields?: PduFields): PDU;
    }

    interface ConnectOptions {
      host: string;
      port: number;
      tls?: boolean;
      [option: string]: unknown;
    }

    /** One SMPP session over one socket; emits "connect", "close", "error", "pdu" and each command name. */
    class Session extends EventEmitter {
      readonly socket: Socket;
      /** false when the socket is no longer writable (nothing was sent) */
      send(pdu: PDU, responseCallback?: (response: PDU) => void, sendCallback?: (sent: PDU) => void): boolean;
      close(callback?: () => void): void;
      destroy(callback?: () => void): void;
    }

    class Server extends NetServer {
      readonly sessions: Session[];
    }

    interface TextEncoding {
      match(text: string): boolean;
      encode(text: string): Buffer;
      decode(bytes: Buffer): string;
    }

    function connect(options: ConnectOptions, listener?: () => void): Session;
    function createServer(options: Record<string, unknown>, listener?: (session: Session) => void): Server;

    /** command_status names -> values, e.g. `ESME_RINVPASWD: 0x0E` */
    const errors: Readonly<Record<string, number>>;
    /** GSM 03.38 default alphabet ("ASCII" in this package), Latin-1 and UCS-2 */
    const encodings: {
      readonly ASCII: TextEncoding;
      readonly LATIN1: TextEncoding;
      readonly UCS2: TextEncoding;
    };
  }

  export = smpp;
}
