"""Save real answers as the Postman collection's example responses, one per request.

    python3 -m http.server ...   # any local receiver that answers 200 to POST, PUT, PATCH and GET
    RECEIVER_URL=http://127.0.0.1:PORT NEWMAN_REPORT=/tmp/newman.json sample_apis/check.sh
    .venv/bin/python sample_apis/record_examples.py /tmp/newman.json http://127.0.0.1:PORT

Tokens, passwords and signing secrets in the answers are replaced by placeholders, the receiver's
address by the collection's default receiver_url, and the schema's answer is cut to the ingest's path.
"""

import json
import sys
from pathlib import Path
from typing import Any

COLLECTION = Path(__file__).with_name("datapusher.postman_collection.json")
DEFAULT_RECEIVER_URL = "https://postman-echo.com"
SECRET_KEYS = {
    "app_secret_token",
    "app_secret_token_prefix",
    "token",
    "password",
    "signing_secret",
    "previous_signing_secret",
}
KEPT_HEADERS = {"content-type", "allow", "retry-after"}
SCHEMA_PATH = "/server/incoming_data"


def without_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: f"<{key}>" if key in SECRET_KEYS and value[key] else without_secrets(value[key])
            for key in value
        }
    if isinstance(value, list):
        return [without_secrets(item) for item in value]
    return value


def example_body(text: str, receiver_url: str) -> str:
    if not text:
        return ""
    data = json.loads(text)
    if isinstance(data, dict) and "openapi" in data:
        paths = {SCHEMA_PATH: data["paths"][SCHEMA_PATH]}
        data = {"openapi": data["openapi"], "info": data["info"], "paths": paths}
    text = json.dumps(without_secrets(data), indent=2, ensure_ascii=False)
    return text.replace(receiver_url, DEFAULT_RECEIVER_URL)


def main(report_path: str, receiver_url: str) -> None:
    report = json.loads(Path(report_path).read_text())
    answers = {run["item"]["name"]: run["response"] for run in report["run"]["executions"]}
    collection = json.loads(COLLECTION.read_text())
    for group in collection["item"]:
        for item in group["item"]:
            answer = answers[item["name"]]
            headers = [h for h in answer["header"] if h["key"].lower() in KEPT_HEADERS]
            item["response"] = [
                {
                    "name": f"{answer['code']} {answer['status']}",
                    "originalRequest": {k: v for k, v in item["request"].items() if k != "description"},
                    "status": answer["status"],
                    "code": answer["code"],
                    "_postman_previewlanguage": "json" if headers else "text",
                    "header": headers,
                    "body": example_body(bytes(answer["stream"]["data"]).decode(), receiver_url),
                }
            ]
    COLLECTION.write_text(json.dumps(collection, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
