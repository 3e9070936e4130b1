"""python-flask: the application of ccm's seed journey.

A small Flask server that serves HTTPS with the certificate and key that ccm-launch writes before
it executes this program (run unconverted, it uses whatever is mounted at those paths). The
certificate is read after start, never baked into the image, and re-read when it changes on disk
(the launcher renews it before expiry), so new connections get the renewed certificate.

Environment (all optional):
  APP_HOST                 address to listen on (default 0.0.0.0)
  APP_PORT                 TCP port (default 8443)
  APP_CERT_PATH            PEM certificate, leaf first (default /run/cert.pem)
  APP_KEY_PATH             PEM private key (default /run/key.pem)
  APP_CERT_RELOAD_SECONDS  how often to look for a renewed certificate (default 30; 0 = never)
  APP_SIGSTRUCT_PATH       the enclave's SIGSTRUCT written by `ccm convert`
                           (default /opt/ccm/enclave.sig)
  APP_AESM_DIR             the quote helper's directory; a simulated platform publishes
                           ccm-sim-cpu.key there (default /var/run/aesmd)

Routes:
  /          an HTML page saying which enclave identity the app runs as
  /healthz   "ok" (text/plain)
  /identity  the same identity as JSON
"""

import hashlib
import html
import json
import os
import signal
import ssl
import struct
import sys
import threading
import time

from flask import Flask, Response
from werkzeug.serving import make_server

NAME = "python-flask"

HOST = os.environ.get("APP_HOST", "0.0.0.0")
PORT = int(os.environ.get("APP_PORT", "8443"))
CERT_PATH = os.environ.get("APP_CERT_PATH", "/run/cert.pem")
KEY_PATH = os.environ.get("APP_KEY_PATH", "/run/key.pem")
RELOAD_SECONDS = float(os.environ.get("APP_CERT_RELOAD_SECONDS", "30"))
SIGSTRUCT_PATH = os.environ.get("APP_SIGSTRUCT_PATH", "/opt/ccm/enclave.sig")
AESM_DIR = os.environ.get("APP_AESM_DIR", "/var/run/aesmd")

SIGSTRUCT_SIZE = 1808


def log(message):
    print(f"{NAME}: {message}", file=sys.stderr, flush=True)


def enclave_identity():
    """The identity recorded in the SIGSTRUCT (DESIGN.md section 4 offsets), or None."""
    try:
        with open(SIGSTRUCT_PATH, "rb") as f:
            sig = f.read(SIGSTRUCT_SIZE + 1)
    except OSError:
        return None
    if len(sig) != SIGSTRUCT_SIZE:
        return None
    (attribute_flags,) = struct.unpack_from("<Q", sig, 928)
    isvprodid, isvsvn = struct.unpack_from("<HH", sig, 1024)
    return {
        "mrenclave": sig[960:992].hex(),
        "mrsigner": hashlib.sha256(sig[128:512]).hexdigest(),
        "isvprodid": isvprodid,
        "isvsvn": isvsvn,
        "debug": bool(attribute_flags & 2),
    }


def simulated():
    return os.path.exists(os.path.join(AESM_DIR, "ccm-sim-cpu.key"))


class Tls:
    """The server's TLS context, reloaded in place when the files change."""

    def __init__(self):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.fingerprint = None
        self.loaded = None
        self.load()

    @staticmethod
    def stamp():
        return tuple(
            (s.st_ino, s.st_size, s.st_mtime_ns) for s in map(os.stat, (CERT_PATH, KEY_PATH))
        )

    def load(self):
        stamp = self.stamp()
        # Check the pair in a scratch context first: a failed load_cert_chain can leave a context
        # with the new certificate and no key, which would break new handshakes until the next try.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(CERT_PATH, KEY_PATH)
        self.context.load_cert_chain(CERT_PATH, KEY_PATH)
        with open(CERT_PATH, encoding="ascii") as f:
            pem = f.read()
        end = pem.find("-----END CERTIFICATE-----")
        leaf = pem[: end + len("-----END CERTIFICATE-----")] if end >= 0 else pem
        self.fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(leaf)).hexdigest()
        self.loaded = stamp

    def watch(self):
        while True:
            time.sleep(RELOAD_SECONDS)
            try:
                if self.stamp() != self.loaded:
                    self.load()
                    log(f"reloaded the certificate {CERT_PATH} (sha256 {self.fingerprint})")
            except (OSError, ValueError, ssl.SSLError) as e:
                log(f"keeping the current certificate: cannot reload {CERT_PATH}: {e}")


app = Flask(NAME)
tls = None


def identity():
    ident = enclave_identity()
    return {
        "app": NAME,
        "enclave": ident is not None,
        "simulated": simulated(),
        "identity": ident,
        "certificate_sha256": tls.fingerprint if tls else None,
    }


@app.get("/healthz")
def healthz():
    return Response("ok\n", mimetype="text/plain")


@app.get("/identity")
def identity_json():
    return Response(json.dumps(identity(), sort_keys=True) + "\n", mimetype="application/json")


@app.get("/")
def index():
    info = identity()
    ident = info["identity"]
    if ident is None:
        where = f"not in an enclave (no SIGSTRUCT at {SIGSTRUCT_PATH})"
        rows = []
    else:
        where = "in a simulated enclave" if info["simulated"] else "in an enclave"
        rows = [
            ("MRENCLAVE", ident["mrenclave"]),
            ("MRSIGNER", ident["mrsigner"]),
            ("ISVPRODID", ident["isvprodid"]),
            ("ISVSVN", ident["isvsvn"]),
            ("Debug", "yes" if ident["debug"] else "no"),
        ]
    rows.append(("Certificate SHA-256", info["certificate_sha256"]))
    table = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td><code>{html.escape(str(v))}</code></td></tr>"
        for k, v in rows
    )
    page = (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{NAME}</title></head><body>"
        f"<h1>Hello from {NAME} {html.escape(where)}</h1>"
        f"<table>{table}</table></body></html>\n"
    )
    return Response(page, mimetype="text/html")


def stop(signum, _frame):
    raise SystemExit(0)


def main():
    global tls
    # As PID 1 of a container, default signal dispositions are ignored: handle them.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        tls = Tls()
    except (OSError, ValueError, ssl.SSLError) as e:
        log(f"error: cannot load the TLS certificate {CERT_PATH} and key {KEY_PATH}: {e}")
        return 1
    if RELOAD_SECONDS > 0:
        threading.Thread(target=tls.watch, name="cert-reload", daemon=True).start()
    try:
        server = make_server(HOST, PORT, app, threaded=True, ssl_context=tls.context)
    except OSError as e:
        log(f"error: cannot listen on {HOST}:{PORT}: {e}")
        return 1
    log(f"serving https://{HOST}:{PORT}/ (certificate sha256 {tls.fingerprint})")
    try:
        server.serve_forever()
    except SystemExit:
        pass
    finally:
        server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
