"""A mail server for the tests: aiosmtpd (PyPI) on loopback, which accepts every message and
prints it as one JSON line on stdout: {"from", "to", "data"}. The first line is the port it
listens on, {"port": N}. Given a port, it listens there (a test that starts it late, to show
that the gateway retries a server that was down); otherwise on a free one."""

import asyncio
import json
import sys

from aiosmtpd.smtp import SMTP


class Print:
    async def handle_DATA(self, server, session, envelope):
        print(
            json.dumps(
                {
                    "from": envelope.mail_from,
                    "to": envelope.rcpt_tos,
                    "data": envelope.content.decode("utf-8", "replace"),
                }
            ),
            flush=True,
        )
        return "250 Message accepted for delivery"


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Print(), hostname="localhost"), "127.0.0.1", port
    )
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await server.serve_forever()


asyncio.run(main())
