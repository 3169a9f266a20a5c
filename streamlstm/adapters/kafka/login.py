"""Fail fast and clearly on wrong Kafka credentials: one SASL login before a client starts.

Why not leave it to kafka-python (3.0): it retries a failed SASL login until its bootstrap
timeout (30 s) and then raises only "Unable to bootstrap". It also often loses the broker's
failure response: Kafka sends it and closes the connection at once, and kafka-python's reader
drops the bytes that arrive together with the close. So this module speaks the two requests
of a SASL login itself (SaslHandshake v1, SaslAuthenticate v0) on a blocking socket, where a
response is always read before the close, and raises ``KafkaAuthFailed`` on a definite "no".

Anything that is not a definite answer (the broker unreachable, a connection cut) is left to
the client, which reports it as before. The password only feeds the SASL messages: no text
built here contains it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import socket
import ssl
import struct
from typing import Any

SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_HANDSHAKE, _AUTHENTICATE = 17, 36  # Kafka API keys
_CLIENT_ID = b"streamlstm-login-check"
# TLS errors that mean "the connection went away", not "the certificate or protocol is wrong"
_CUT_OFF = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


class KafkaAuthFailed(RuntimeError):
    """The broker refused our credentials or TLS; the text never contains the password."""


class _Refused(Exception):
    """A definite refusal from the broker; the caller turns it into KafkaAuthFailed."""


def check_login(bootstrap: str, options: dict[str, Any], timeout_s: float = 10.0) -> None:
    """Raise KafkaAuthFailed if a bootstrap server refuses the configured SASL login or TLS.

    Does nothing without SASL (or for mechanisms other than PLAIN/SCRAM), and returns
    quietly as soon as one server accepts the login or when none gives a definite answer.
    """
    protocol = options.get("security_protocol", "PLAINTEXT")
    mechanism = options.get("sasl_mechanism")
    user, password = options.get("sasl_plain_username"), options.get("sasl_plain_password")
    if protocol not in SASL_PROTOCOLS or mechanism not in MECHANISMS or not user or not password:
        return
    who = f"user {user!r} ({mechanism} over {protocol})"
    for address in (a.strip() for a in bootstrap.split(",") if a.strip()):
        host, _, port = address.rpartition(":")
        try:
            with _connect(host, int(port), protocol, options, timeout_s) as sock:
                _login(sock, mechanism, user, password)
            return
        except _CUT_OFF:
            continue  # no verdict: the client reports it as before
        except ssl.SSLError as exc:  # a refused certificate, a plaintext port, ...
            reason = getattr(exc, "verify_message", None) or exc.reason or type(exc).__name__
            raise KafkaAuthFailed(
                f"Kafka TLS handshake failed at {address} ({reason}) for {who}: check "
                "kafka.ssl_cafile / kafka.ssl_certfile / kafka.ssl_keyfile / kafka.ssl_password"
            ) from None
        except _Refused as exc:
            reason = str(exc).replace(password, "***")
            message = f"Kafka authentication failed for {who} at {address}: {reason}"
            raise KafkaAuthFailed(message) from None
        except (OSError, ValueError, KeyError, struct.error):
            continue  # unreachable or a garbled answer: no verdict either


def _connect(
    host: str, port: int, protocol: str, options: dict[str, Any], timeout_s: float
) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout_s)
    if protocol != "SASL_SSL":
        return sock
    try:
        return _tls_context(options).wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def _tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    # The same context kafka-python builds from these options (KafkaSSLTransport).
    if options.get("ssl_context") is not None:
        return options["ssl_context"]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = options.get("ssl_check_hostname", True)
    if options.get("ssl_cafile"):
        ctx.load_verify_locations(options["ssl_cafile"])
    else:
        ctx.load_default_certs()
    if options.get("ssl_certfile"):
        ctx.load_cert_chain(
            options["ssl_certfile"], options.get("ssl_keyfile"), options.get("ssl_password")
        )
    return ctx


def _login(sock: socket.socket, mechanism: str, user: str, password: str) -> None:
    offered = _handshake(sock, mechanism)
    if mechanism not in offered:
        raise _Refused(
            f"the broker does not enable {mechanism} (it offers {', '.join(offered) or 'none'}): "
            "check kafka.sasl_mechanism"
        )
    if mechanism == "PLAIN":
        _authenticate(sock, b"\0" + user.encode() + b"\0" + password.encode(), 2)
        return
    scram = _Scram(mechanism, user, password)
    server_first = _authenticate(sock, scram.first(), 2)
    server_final = _authenticate(sock, scram.final(server_first), 3)
    if not scram.verified(server_final):
        raise _Refused("the broker's SCRAM signature does not match: not the expected broker")


def _handshake(sock: socket.socket, mechanism: str) -> list[str]:
    body = _exchange(sock, _HANDSHAKE, 1, 1, _string(mechanism))
    (error,) = struct.unpack_from(">h", body)
    (count,) = struct.unpack_from(">i", body, 2)
    offered, pos = [], 6
    for _ in range(max(count, 0)):
        (size,) = struct.unpack_from(">h", body, pos)
        offered.append(body[pos + 2 : pos + 2 + size].decode())
        pos += 2 + size
    # An unsupported mechanism comes back as an error with the enabled ones (the caller names
    # them); a listener without SASL answers an error and no mechanisms.
    if error and not offered:
        raise _Refused(
            f"this listener does not accept SASL logins (Kafka error {error}): "
            "check kafka.security_protocol and the bootstrap port"
        )
    if error and mechanism in offered:
        raise _Refused(f"SASL handshake refused (Kafka error {error})")
    return offered


def _authenticate(sock: socket.socket, token: bytes, correlation: int) -> bytes:
    body = _exchange(sock, _AUTHENTICATE, 0, correlation, struct.pack(">i", len(token)) + token)
    (error, size) = struct.unpack_from(">hh", body)
    message = body[4 : 4 + size].decode(errors="replace") if size >= 0 else ""
    pos = 4 + max(size, 0)
    if error:
        raise _Refused(
            f"check kafka.sasl_username / kafka.sasl_password (broker: {message or error})"
        )
    (length,) = struct.unpack_from(">i", body, pos)
    return body[pos + 4 : pos + 4 + max(length, 0)]


def _exchange(
    sock: socket.socket, api_key: int, version: int, correlation: int, body: bytes
) -> bytes:
    # Request header v1: api key, version, correlation id, client id (non-flexible versions).
    header = struct.pack(">hhi", api_key, version, correlation) + _string(_CLIENT_ID.decode())
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _read(sock, 4))
    response = _read(sock, size)
    if struct.unpack_from(">i", response)[0] != correlation:
        raise ValueError("response out of order")
    return response[4:]  # response header v0: just the correlation id


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by the broker")
        data += chunk
    return data


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


class _Scram:
    """The client side of RFC 5802 (SCRAM), as Kafka uses it (no channel binding)."""

    def __init__(self, mechanism: str, user: str, password: str) -> None:
        self._hash = hashlib.sha256 if mechanism == "SCRAM-SHA-256" else hashlib.sha512
        self._password = password.encode()
        self._nonce = secrets.token_hex(16)
        name = user.replace("=", "=3D").replace(",", "=2C")
        self._first_bare = f"n={name},r={self._nonce}"
        self._server_signature = b""

    def first(self) -> bytes:
        return f"n,,{self._first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        nonce = fields.get("r", "")
        if not nonce.startswith(self._nonce):
            raise _Refused("the broker's SCRAM nonce does not extend ours")
        digest = self._hash().name
        salted = hashlib.pbkdf2_hmac(
            digest, self._password, base64.b64decode(fields["s"]), int(fields["i"])
        )
        client_key = hmac.new(salted, b"Client Key", self._hash).digest()
        stored_key = self._hash(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._first_bare},{text},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, self._hash).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.new(salted, b"Server Key", self._hash).digest()
        self._server_signature = hmac.new(server_key, auth_message, self._hash).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verified(self, server_final: bytes) -> bool:
        fields = dict(p.split("=", 1) for p in server_final.decode().split(",") if "=" in p)
        got = base64.b64decode(fields.get("v", ""))
        return bool(self._server_signature) and hmac.compare_digest(got, self._server_signature)
