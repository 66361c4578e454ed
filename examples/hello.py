"""A small Flask app to try the launcher with: ``serve examples.hello:app``."""

from __future__ import annotations

import os
import time

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "Hello from wsgi-launcher!\n"


@app.get("/json")
def as_json() -> object:
    return jsonify(message="hello", pid=os.getpid(), script_root=request.script_root, remote_addr=request.remote_addr)


@app.get("/slow")
def slow() -> str:
    time.sleep(float(request.args.get("t", "0.1")))
    return "slept\n"


@app.post("/echo")
def echo() -> bytes:
    return request.get_data()


if __name__ == "__main__":
    # Kept under the guard on purpose: a server importing this module must not start a second one.
    app.run()
