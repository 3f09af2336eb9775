"""A small stand-in for the Hugging Face Hub's HTTP endpoints on 127.0.0.1, for push/pull tests without network.

It answers the requests `huggingface_hub`'s own code sends for create_repo, create_commit (README
validation, preupload, the NDJSON commit), repo_info, list_repo_tree and file download (HEAD + GET on
/resolve), keeps each repository's commits in memory, and records every request (method, path,
headers) so tests can check what the client sent. Every file is answered as a "regular" (non-LFS)
upload, so the LFS/Xet transfer that large files take on the real Hub is not exercised here.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

GITATTRIBUTES = b"*.keras filter=lfs diff=lfs merge=lfs -text\n"


def git_hash(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)   # commit oid -> files
    refs: dict[str, str] = field(default_factory=dict)                   # branch / tag -> commit oid
    log: list[str] = field(default_factory=list)                         # commit oids, oldest first

    def commit(self, files: dict[str, bytes], summary: str) -> str:
        parent = self.log[-1] if self.log else ""
        oid = hashlib.sha1(f"{parent}\n{summary}\n{time.time_ns()}".encode()
                           + b"".join(git_hash(v).encode() + k.encode() for k, v in sorted(files.items()))).hexdigest()
        self.commits[oid] = files
        self.refs["main"] = oid
        self.log.append(oid)
        return oid

    def resolve(self, rev: str) -> str | None:
        if rev in self.refs:
            return self.refs[rev]
        if re.fullmatch(r"[0-9a-f]{40}", rev) and rev in self.commits:
            return rev
        return None


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]     # names in lower case
    body: bytes


class FakeHub:
    """`with FakeHub() as hub:` serves on hub.url until the block ends; hub.requests lists what came in."""

    def __init__(self, token: str | None = None):
        self.token = token                      # when set, writes need "Authorization: Bearer <token>"
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[repo.resolve(rev)]

    # ------------------------------------------------------------------ request handling

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: bytes | dict | list = b"", headers: dict | None = None,
                      head: bool = False):
                data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
                self.send_response(code)
                if isinstance(body, (dict, list)):
                    self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            def _error(self, code: int, code_name: str, message: str, head: bool = False):
                self._send(code, {"error": message}, {"X-Error-Code": code_name, "X-Error-Message": message},
                           head=head)

            def _handle(self, method: str):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                url = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with hub._lock:
                    hub.requests.append(Request(method, url.path, headers, body))
                    self._route(method, unquote(url.path), parse_qs(url.query), body)

            def do_GET(self):
                self._handle("GET")

            def do_HEAD(self):
                self._handle("HEAD")

            def do_POST(self):
                self._handle("POST")

            def _authorized(self) -> bool:
                auth = self.headers.get("Authorization", "")
                return bool(auth.startswith("Bearer ")) and (hub.token is None or auth == f"Bearer {hub.token}")

            def _repo(self, repo_id: str, head: bool = False) -> Repo | None:
                repo = hub.repos.get(repo_id)
                if repo is None or (repo.private and not self._authorized()):
                    self._error(404, "RepoNotFound", f"Repository not found: {repo_id}", head)
                    return None
                return repo

            def _route(self, method: str, path: str, query: dict, body: bytes):
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit|revision|tree)/(.+?)(/.*)?", path)
                r = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if method == "GET" and path == "/api/models":
                    return self._send(200, [])
                if method == "POST" and path == "/api/repos/create":
                    return self._create(json.loads(body))
                if method == "POST" and path == "/api/validate-yaml":
                    return self._validate_yaml(json.loads(body))
                if m:
                    repo_id, action, rev, sub = m.groups()
                    if action in ("preupload", "commit"):
                        if method != "POST":
                            return self._send(405)
                        if not self._authorized():
                            return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
                    repo = self._repo(repo_id)
                    if repo is None:
                        return
                    if action == "preupload":
                        return self._preupload(repo, rev, json.loads(body))
                    if action == "commit":
                        return self._commit(repo, rev, body)
                    oid = repo.resolve(rev)
                    if oid is None:
                        return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                    if action == "revision":
                        return self._send(200, {"id": repo.repo_id, "modelId": repo.repo_id, "sha": oid,
                                                "private": repo.private, "siblings": [
                                                    {"rfilename": p} for p in sorted(repo.commits[oid])]})
                    return self._send(200, [{"type": "file", "oid": git_hash(v), "size": len(v), "path": p}
                                            for p, v in sorted(repo.commits[oid].items())])
                if r and method in ("GET", "HEAD"):
                    repo_id, rev, file = r.groups()
                    head = method == "HEAD"
                    repo = self._repo(repo_id, head)
                    if repo is None:
                        return
                    oid = repo.resolve(rev)
                    if oid is None:
                        return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
                    data = repo.commits[oid].get(file)
                    if data is None:
                        return self._error(404, "EntryNotFound", f"{file} does not exist on {rev}", head)
                    return self._send(200, data, {"X-Repo-Commit": oid, "ETag": f'"{git_hash(data)}"',
                                                  "Content-Type": "application/octet-stream"}, head)
                self._send(404, {"error": f"not served by the fake hub: {method} {path}"})

            def _create(self, payload: dict):
                if not self._authorized():
                    return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
                repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") \
                    else payload["name"]
                if repo_id in hub.repos:
                    return self._send(409, {"error": "You already created this model repo",
                                            "url": f"{hub.url}/{repo_id}"})
                repo = Repo(repo_id, payload.get("visibility") == "private" or bool(payload.get("private")))
                repo.commit({".gitattributes": GITATTRIBUTES}, "initial commit")
                hub.repos[repo_id] = repo
                self._send(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

            def _validate_yaml(self, payload: dict):
                text = payload.get("content", "")
                m = re.match(r"---\n(.*?)\n---\n", text, re.S)
                try:
                    data = yaml.safe_load(m.group(1)) if m else {}
                except yaml.YAMLError as exc:
                    return self._send(400, {"errors": [{"message": str(exc)}], "warnings": []})
                if not isinstance(data, dict):
                    return self._send(400, {"errors": [{"message": "metadata is not a mapping"}], "warnings": []})
                self._send(200, {"errors": [], "warnings": []})

            def _preupload(self, repo: Repo, rev: str, payload: dict):
                oid = repo.resolve(unquote(rev))
                if oid is None:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                current = repo.commits[oid]
                self._send(200, {"files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                     "oid": git_hash(current[f["path"]]) if f["path"] in current else None}
                    for f in payload["files"]]})

            def _commit(self, repo: Repo, rev: str, body: bytes):
                oid = repo.resolve(unquote(rev))
                if oid is None or unquote(rev) != "main":
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                files = dict(repo.commits[oid])
                summary = ""
                for line in body.splitlines():
                    item = json.loads(line)
                    key, value = item["key"], item["value"]
                    if key == "header":
                        summary = value["summary"]
                    elif key == "file":
                        files[value["path"]] = base64.b64decode(value["content"])
                    elif key == "deletedFile":
                        files.pop(value["path"], None)
                    else:
                        return self._send(400, {"error": f"the fake hub does not accept '{key}' operations"})
                new = repo.commit(files, summary)
                self._send(200, {"commitUrl": f"{hub.url}/{repo.repo_id}/commit/{new}", "commitOid": new,
                                 "pullRequestUrl": None})

        return Handler
