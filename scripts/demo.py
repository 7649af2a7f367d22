"""The demo behind ./scripts/demo: a throwaway server, a sample database, and the
backup → verify → restore path with the restored tables compared by CHECKSUM TABLE."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tenangdb.mysql.sandbox import start_sandbox

SAMPLE = """
CREATE DATABASE shop CHARACTER SET utf8mb4;
USE shop;
CREATE TABLE customer (
  id INT PRIMARY KEY AUTO_INCREMENT,
  name VARCHAR(100) NOT NULL,
  city VARCHAR(100),
  joined DATE,
  balance DECIMAL(12,2) NOT NULL DEFAULT 0
);
CREATE TABLE orders (
  id BIGINT PRIMARY KEY AUTO_INCREMENT,
  customer_id INT NOT NULL,
  total DECIMAL(12,2) NOT NULL,
  note TEXT,
  photo BLOB,
  placed_at DATETIME(6) NOT NULL,
  FOREIGN KEY (customer_id) REFERENCES customer(id)
);
INSERT INTO customer (name, city, joined, balance)
  SELECT CONCAT('Customer ', seq), ELT(1 + seq % 4, 'Jakarta', 'Bandung', 'Kraków', '東京'),
         '2020-01-01' + INTERVAL seq DAY, seq * 1.25
  FROM seq_1_to_5000;
INSERT INTO orders (customer_id, total, note, photo, placed_at)
  SELECT 1 + seq % 5000, (seq % 997) / 7, IF(seq % 3 = 0, NULL, CONCAT('order ', seq, ' 🙂')),
         IF(seq % 10 = 0, UNHEX(SHA2(seq, 256)), NULL), '2024-01-01' + INTERVAL seq MINUTE
  FROM seq_1_to_20000;
CREATE VIEW big_spenders AS SELECT customer_id, SUM(total) AS spent FROM orders GROUP BY customer_id
  HAVING spent > 1000;
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW SET NEW.placed_at = NEW.placed_at;
CREATE PROCEDURE customer_count() SELECT COUNT(*) FROM customer;
"""


def step(title: str) -> None:
    print(f"\n\033[1m==> {title}\033[0m", flush=True)


def tenangdb(config: Path, *args: str) -> None:
    argv = [str(Path(sys.executable).with_name("tenangdb")), "--config", str(config), *args]
    print("$ tenangdb " + " ".join(["--config", str(config), *args]), flush=True)
    subprocess.run(argv, check=True)


def checksums(box, database: str) -> list[str]:
    out = box.sql("CHECKSUM TABLE customer, orders EXTENDED", database)
    return [line.split("\t") for line in out.splitlines()]


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="tenangdb-demo-"))
    os.chmod(work, 0o700)
    step("Starting a throwaway MariaDB in a private temporary folder")
    box = start_sandbox(parent=str(work))
    try:
        print(f"server on {box.socket_path} (pid {box.pid})")
        step("Loading the sample database `shop` (5,000 customers, 20,000 orders, a view, a trigger, a routine)")
        box.sql(SAMPLE)
        step("Creating an age key pair for encryption")
        key = work / "age-identity.txt"
        subprocess.run([str(Path(sys.executable).with_name("tenangdb")), "key", "generate", "-o", str(key)],
                       check=True)
        config = work / "config.yaml"
        config.write_text(f"""database:
  socket: {box.socket_path}
  username: root
backup:
  directory: {work / 'backups'}
  databases: [shop]
  compression: {{format: zstd, level: 3}}
  encryption:
    enabled: true
    key_file: {key}
""")
        os.chmod(config, 0o600)
        step("Backing up: mariadb-dump → SHA-256 → zstd → age → SHA-256 → atomic commit")
        tenangdb(config, "backup", "--yes")
        folder = next(p for p in (work / "backups" / "shop").glob("*/*") if not p.name.startswith("."))
        for path in sorted(folder.iterdir()):
            print(f"  {oct(path.stat().st_mode & 0o777)}  {path.stat().st_size:>9}  {path}")
        step("Verifying: re-hash, decrypt, decompress and compare with the manifest")
        tenangdb(config, "verify", "--backup-path", str(folder))
        step("Restoring into a new database `shop_restored`")
        tenangdb(config, "restore", "--backup-path", str(folder), "--target-database", "shop_restored")
        step("Comparing CHECKSUM TABLE of the original and the restored tables")
        original, restored = checksums(box, "shop"), checksums(box, "shop_restored")
        for (table, a), (_, b) in zip(original, restored):
            print(f"  {table.split('.', 1)[1]:<10} original {a:>12}   restored {b:>12}   {'OK' if a == b else 'DIFFERENT'}")
        if [a for _, a in original] != [b for _, b in restored]:
            print("the restored tables differ from the original", file=sys.stderr)
            return 1
        print("\nAll tables match. The demo's server and files are removed now.")
        return 0
    finally:
        box.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
