"""Make the two Content Credentials samples from astronaut.jpg (public domain, NASA):

    python sample_images/make_credential_samples.py     (from the repository root)

* credential_capture.jpg: astronaut.jpg with a C2PA manifest whose c2pa.created action
  declares a camera capture (IPTC digitalSourceType digitalCapture);
* credential_ai_declared.jpg: astronaut.jpg with a C2PA manifest whose c2pa.created action
  declares trainedAlgorithmicMedia. The claim is FALSE on purpose (the picture is a NASA
  photograph): it shows the rule that a declaration of AI generation wins whatever the score.

Both are signed with a throwaway certificate chain made here and thrown away (no key is kept),
so the Detect page reports "valid, but the signer is not on the trust list". Signing needs
c2pa-python (requirements.txt) and cryptography (requirements-dev.txt). Not byte-for-byte
deterministic: each run makes a new key and manifest ids; the pixels are astronaut.jpg's.
"""
from __future__ import annotations

import datetime
import io
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
SAMPLES = {"credential_capture.jpg": "digitalCapture", "credential_ai_declared.jpg": "trainedAlgorithmicMedia"}


def throwaway_chain(org: str = "Deepfake Lab samples (untrusted)") -> tuple[str, str, str]:
    """(certificate chain PEM, private key PEM, root PEM): a root CA and a signing certificate
    under it (C2PA refuses self-signed signing certificates), valid for a year. The tests sign
    with it too (tests/test_provenance.py)."""
    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])

    now = datetime.datetime.now(datetime.timezone.utc)
    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
                 encipher_only=False, decipher_only=False)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("Sample Root")).issuer_name(name("Sample Root"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **usage), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name("Sample Signer")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return ((leaf.public_bytes(pem) + ca.public_bytes(pem)).decode(),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
            ca.public_bytes(pem).decode())


def main() -> None:
    source = (HERE / "astronaut.jpg").read_bytes()
    certs, key, _ = throwaway_chain()
    no_thumbnail = c2pa.Context(c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}}))
    for name, source_type in SAMPLES.items():
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, certs.encode(), key.encode(),
                                                           None))
        manifest = {"claim_generator_info": [{"name": "Deepfake Lab sample maker", "version": "1.0"}],
                    "title": name, "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                        {"action": "c2pa.created", "digitalSourceType": IPTC + source_type}]}}]}
        out = io.BytesIO()
        with c2pa.Builder(manifest, context=no_thumbnail) as builder:
            builder.sign(signer, "image/jpeg", io.BytesIO(source), out)
        (HERE / name).write_bytes(out.getvalue())
        print(f"{name}: {len(out.getvalue()):,} bytes, c2pa.created {source_type}")


if __name__ == "__main__":
    main()
