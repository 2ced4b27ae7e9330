"""Sets up the endpoint-device phases of scripts/load: an agent connector, an enrollment token
(its key written to OUT_DIR/enrollment_key), DEVICES devices enrolled as agents do (their device
keys written to OUT_DIR/device_keys, one per line) and a realistic check-in report of a few
kilobytes (OUT_DIR/facts.json), shaped like a Linux agent's `uname`, `lsblk`, `ip addr`,
`dpkg -l` and `ps` output.

    python3 scripts/device_setup.py BASE ADMIN_KEY OUT_DIR DEVICES
"""
import json
import os
import sys
import urllib.request

base, admin_key, out, devices = sys.argv[1:5]
devices = int(devices)


def call(method, path, body=None, authorization=f"Bearer {admin_key}"):
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": authorization, "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


connector = call("POST", "/api/v3/endpoints/agents/connectors/", {"name": "bench", "snapshot_expiry": "hours=24"})
token = call("POST", "/api/v3/endpoints/agents/enrollment_tokens/", {"name": "bench", "connector": connector["connector_uuid"]})
key = call("GET", f"/api/v3/endpoints/agents/enrollment_tokens/{token['token_uuid']}/view_key/")["key"]
with open(os.path.join(out, "enrollment_key"), "w") as f:
    f.write(key)
keys = []
for n in range(devices):
    enrolled = call("POST", "/api/v3/endpoints/agents/connectors/enroll/", {"device_serial": f"BENCH-{n:05d}", "device_name": f"bench-{n:05d}"},
                    authorization=f"Bearer {key}")
    keys.append(enrolled["token"])
with open(os.path.join(out, "device_keys"), "w") as f:
    f.write("\n".join(keys) + "\n")

packages = ["adduser", "apt", "base-files", "bash", "bsdutils", "ca-certificates", "coreutils", "curl", "dash", "debconf", "dpkg",
            "e2fsprogs", "findutils", "gpgv", "grep", "gzip", "hostname", "libc6", "libssl3", "login", "mount", "openssh-server",
            "openssl", "passwd", "perl-base", "procps", "sed", "sudo", "systemd", "tar", "tzdata", "util-linux", "zlib1g"]
facts = {
    "os": {"family": "linux", "name": "Ubuntu", "version": "24.04.3 LTS (Noble Numbat)", "arch": "amd64"},
    "disks": [{"name": "/dev/nvme0n1p2", "mountpoint": "/", "label": "root", "capacity_total_bytes": 511101108224,
               "capacity_used_bytes": 91203485696, "encryption_enabled": True}],
    "network": {"hostname": "bench", "firewall_enabled": True, "gateway": "192.0.2.1", "interfaces": [
        {"name": "lo", "hardware_address": "00:00:00:00:00:00", "ip_addresses": ["127.0.0.1", "::1"]},
        {"name": "enp3s0", "hardware_address": "3c:7c:3f:1e:9a:01", "ip_addresses": ["192.0.2.17"], "dns_servers": ["192.0.2.1"]}]},
    "hardware": {"model": "ThinkStation P3", "manufacturer": "LENOVO", "serial": "BENCH", "cpu_name": "Intel(R) Core(TM) i7-13700",
                 "cpu_count": 24, "memory_bytes": 68719476736},
    "software": [{"name": p, "version": f"1.{i}.0-1ubuntu0.{i}", "source": "dpkg", "path": f"/usr/share/doc/{p}"} for i, p in enumerate(packages)],
    "processes": [{"id": i + 1, "name": p, "user": "root"} for i, p in enumerate(
        ["systemd", "kthreadd", "sshd", "cron", "dbus-daemon", "systemd-journald", "systemd-logind", "agetty", "ak-sysd"])],
    "users": [{"id": "0", "username": "root", "name": "root", "home": "/root"}, {"id": "1000", "username": "ak", "name": "Ada King", "home": "/home/ak"}],
    "groups": [{"id": "0", "name": "root"}, {"id": "27", "name": "sudo"}, {"id": "1000", "name": "ak"}],
    "vendor": {"goauthentik.io/platform": {"agent_version": "0.23.0"}},
}
with open(os.path.join(out, "facts.json"), "w") as f:
    json.dump(facts, f)
