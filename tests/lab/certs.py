"""A throwaway CA, an etcd server certificate and a client certificate, made with openssl."""

from pathlib import Path

from tests.lab.netns import run


def make_certificates(directory: Path, server_ips: tuple[str, ...] = ("198.18.200.2", "127.0.0.1")) -> dict[str, str]:
    d = directory / "tls"
    d.mkdir(parents=True, exist_ok=True)
    paths = {
        name: str(d / f"{name}.pem")
        for name in ("ca", "ca_key", "server_cert", "server_key", "client_cert", "client_key")
    }
    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=calyx-lab-ca",
        "-keyout",
        paths["ca_key"],
        "-out",
        paths["ca"],
    )
    san = ",".join(f"IP:{ip}" for ip in server_ips)
    for role, cn, ext in (
        ("server", "etcd", f"subjectAltName={san}\nextendedKeyUsage=serverAuth"),
        ("client", "calyx", "extendedKeyUsage=clientAuth"),
    ):
        csr, extfile = d / f"{role}.csr", d / f"{role}.ext"
        extfile.write_text(ext + "\n")
        run(
            "openssl",
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            f"/CN={cn}",
            "-keyout",
            paths[f"{role}_key"],
            "-out",
            str(csr),
        )
        run(
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            paths["ca"],
            "-CAkey",
            paths["ca_key"],
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(extfile),
            "-out",
            paths[f"{role}_cert"],
        )
    return paths
