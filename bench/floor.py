"""The floor: a bare Flask app that answers a small JSON body, served exactly as the app is
(gunicorn.conf.py, 2 workers x 4 threads). Every ratio bench/run.py reports is against it."""

from flask import Flask
from flask import Response
from flask import jsonify

app = Flask(__name__)


@app.get("/")
def index() -> Response:
    return jsonify(status="ok")
