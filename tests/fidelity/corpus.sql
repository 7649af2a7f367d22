-- TenangDB fidelity corpus (MariaDB 10.11+).
--
-- Loads into whichever database is selected: it contains no CREATE DATABASE
-- and no USE, and never names the database literally (the two objects that do
-- carry a qualified name are built with DATABASE() on purpose, to see whether
-- a dump leaks the original name).  Load with the mariadb client, e.g.
--     mariadb --no-defaults --socket=... -uroot some_db < corpus.sql
--
-- Every column type at its extremes, every schema object kind, hostile
-- identifiers.  Tens of rows per table, except `bulk` (5,000 rows).

SET NAMES utf8mb4;
SET time_zone = '+00:00';
-- Non-strict, zero dates allowed, so the extreme values below load as written.
SET sql_mode = 'NO_ENGINE_SUBSTITUTION';
SET foreign_key_checks = 1;

-- Database attributes.  The collation is changed again at the end of the
-- file, so routines/triggers/events created in between carry a "database
-- collation" that differs from the final one (as in real life).
ALTER DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci
  COMMENT 'TenangDB corpus: it''s "hostile" */ ;; `db`';

-- ---------------------------------------------------------------------------
-- Integers
-- ---------------------------------------------------------------------------
CREATE TABLE ints (
  id INT NOT NULL PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED,
  si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
  i INT, iu INT UNSIGNED,
  bi BIGINT, biu BIGINT UNSIGNED,
  zf INT(8) UNSIGNED ZEROFILL,
  b BOOL
) ENGINE=InnoDB COMMENT='integer limits';

INSERT INTO ints VALUES
 (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, 0, 0),
 (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615, 4294967295, 1),
 (3, 0, 1, -1, 1, -1, 1, -1, 1, -1, 1, 1, -128),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (5, -1, 128, -129, 32768, -32769, 8388608, -2147483647, 2147483648, -9223372036854775807, 9223372036854775808, 42, 127);

-- ---------------------------------------------------------------------------
-- Floating point and fixed point
-- ---------------------------------------------------------------------------
CREATE TABLE floats (
  id INT NOT NULL PRIMARY KEY,
  note VARCHAR(40) NOT NULL,
  f FLOAT,
  d DOUBLE,
  fu FLOAT UNSIGNED,
  f72 FLOAT(7,2),
  d_prec DOUBLE(30,10)
);

INSERT INTO floats VALUES
 (1,  'float max / double max',           3.4028234663852886e38,  1.7976931348623157e308, 3.4028234663852886e38, 99999.99, 12345678901234567890.0123456789),
 (2,  'float lowest / double lowest',    -3.4028234663852886e38, -1.7976931348623157e308, 0, -99999.99, -12345678901234567890.0123456789),
 (3,  'min normal',                       1.1754943508222875e-38, 2.2250738585072014e-308, 1.1754943508222875e-38, 0.01, 0.0000000001),
 (4,  'min subnormal',                    1.401298464324817e-45,  4.9406564584124654e-324, 1.401298464324817e-45, -0.01, -0.0000000001),
 (5,  'max subnormal',                    1.1754942106924411e-38, 2.225073858507201e-308,  1.1754942106924411e-38, 0, 0),
 (6,  'negative zero',                    -0e0,                   -0e0,                    0e0, -0e0, -0e0),
 (7,  'not exactly representable',        0.1e0,                  0.1e0 + 0.2e0,           0.1e0, 0.1e0, 0.1e0),
 (8,  'pi / e',                           3.14159265358979e0,     2.718281828459045e0,     16777217e0, 3.14159e0, 3.1415926536e0),
 (9,  '7 significant digits',             1.2345678e0,            1.2345678901234567e0,    123456.7e0, 12.34e0, 1e-10),
 (10, 'nulls',                            NULL, NULL, NULL, NULL, NULL),
 (11, '8 digits / 16777217',              1234.5678e0,            16777217e0,              3.1415927e0, 1.5e0, 1e0),
 (12, '9 digits',                         0.12345678e0,           -0e0,                    4294967296e0, -1.25e0, 2e0);

-- FLOAT in a table without any key (rows identical but for the FLOAT digits included): the
-- dump's rows can only be matched by position.
CREATE TABLE floats_nokey (
  f FLOAT,
  fu FLOAT UNSIGNED,
  note VARCHAR(20)
);

INSERT INTO floats_nokey VALUES
 (1234.5678e0, 1.2345678e0, 'same'), (1234.5677e0, 1.2345677e0, 'same'), (1234.5678e0, 1.2345678e0, 'same'),
 (3.4028234663852886e38, 3.4028234663852886e38, 'max'), (1.1754943508222875e-38, 1.401298464324817e-45, 'min'),
 (-0e0, 0e0, 'zeros'), (16777217e0, 16777217e0, 'int'), (NULL, NULL, NULL), (0.1e0, 0.1e0, 'it''s, (x)');

CREATE TABLE decimals (
  id INT NOT NULL PRIMARY KEY,
  d65 DECIMAL(65,30),
  d65u DECIMAL(65,30) UNSIGNED,
  d650 DECIMAL(65,0),
  d52 DECIMAL(5,2),
  d1 DECIMAL(1,1)
);

INSERT INTO decimals VALUES
 (1, '99999999999999999999999999999999999.999999999999999999999999999999',
     '99999999999999999999999999999999999.999999999999999999999999999999',
     '99999999999999999999999999999999999999999999999999999999999999999', 999.99, 0.9),
 (2, '-99999999999999999999999999999999999.999999999999999999999999999999', 0,
     '-99999999999999999999999999999999999999999999999999999999999999999', -999.99, -0.9),
 (3, '0.000000000000000000000000000001', '0.000000000000000000000000000001', 1, 0.01, 0.1),
 (4, '-0.000000000000000000000000000001', '12345678901234567890123456789012345.678901234567890123456789012345',
     '-1', -0.01, -0.1),
 (5, 0, 0, 0, 0, 0),
 (6, NULL, NULL, NULL, NULL, NULL);

-- ---------------------------------------------------------------------------
-- Temporal
-- ---------------------------------------------------------------------------
CREATE TABLE temporal (
  id INT NOT NULL PRIMARY KEY,
  note VARCHAR(40) NOT NULL,
  d DATE,
  dt DATETIME,
  dt6 DATETIME(6),
  ts6 TIMESTAMP(6) NULL DEFAULT NULL,
  ts TIMESTAMP NULL DEFAULT NULL,
  t TIME,
  t6 TIME(6),
  y YEAR
);

INSERT INTO temporal VALUES
 (1, 'zero',        '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00.000000', '0000-00-00 00:00:00.000000', '0000-00-00 00:00:00', '00:00:00', '00:00:00.000000', 0),
 (2, 'lower bound', '1000-01-01', '1000-01-01 00:00:00', '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000000', '1970-01-01 00:00:01', '-838:59:59', '-838:59:59.000000', 1901),
 (3, 'upper bound', '9999-12-31', '9999-12-31 23:59:59', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', '2038-01-19 03:14:07', '838:59:59', '838:59:59.000000', 2155),
 (4, 'partial zero','2024-00-00', '2024-02-00 00:00:00', '0000-01-01 00:00:00.000001', '2000-01-01 00:00:00.500000', '1999-12-31 23:59:59', '-00:00:01', '-00:00:00.000001', 2000),
 (5, 'leap / frac', '2024-02-29', '2024-02-29 12:34:56', '2024-02-29 12:34:56.123456', '2024-02-29 12:34:56.654321', '2024-02-29 12:34:56', '12:34:56', '-12:34:56.789012', 1970),
 (6, 'dst gap',     '2021-03-28', '2021-03-28 02:30:00', '2021-03-28 02:30:00.000001', '2021-03-28 01:30:00.000001', '2021-10-31 01:30:00', '23:59:59', '838:59:58.999999', 1999),
 (7, 'nulls',       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);

-- ---------------------------------------------------------------------------
-- Bits, binary strings and blobs: every byte value 0..255
-- (TINYBLOB holds 255 bytes: rows 1 and 2 together cover all 256 values)
-- ---------------------------------------------------------------------------
SET @all_bytes = X'000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F606162636465666768696A6B6C6D6E6F707172737475767778797A7B7C7D7E7F808182838485868788898A8B8C8D8E8F909192939495969798999A9B9C9D9E9FA0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBFC0C1C2C3C4C5C6C7C8C9CACBCCCDCECFD0D1D2D3D4D5D6D7D8D9DADBDCDDDEDFE0E1E2E3E4E5E6E7E8E9EAEBECEDEEEFF0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF';

CREATE TABLE bits (
  id INT NOT NULL PRIMARY KEY,
  b1 BIT(1),
  b7 BIT(7),
  b64 BIT(64)
);

INSERT INTO bits VALUES
 (1, b'0', b'0000000', b'0'),
 (2, b'1', b'1111111', b'1111111111111111111111111111111111111111111111111111111111111111'),
 (3, b'1', b'1010101', X'8000000000000000'),
 (4, b'0', b'0000001', X'0000000000000001'),
 (5, NULL, NULL, NULL);

CREATE TABLE binaries (
  id INT NOT NULL PRIMARY KEY,
  note VARCHAR(40) NOT NULL,
  bin16 BINARY(16),
  vb VARBINARY(300),
  tb TINYBLOB,
  bl BLOB,
  mb MEDIUMBLOB,
  lb LONGBLOB,
  vcb VARCHAR(300) CHARACTER SET binary
);

INSERT INTO binaries VALUES
 (1, 'all bytes ascending', X'000102030405060708090A0B0C0D0E0F', @all_bytes, LEFT(@all_bytes, 255), @all_bytes, @all_bytes, @all_bytes, @all_bytes),
 (2, 'all bytes descending', X'FFFEFDFCFBFAF9F8F7F6F5F4F3F2F1F0', REVERSE(@all_bytes), RIGHT(@all_bytes, 255), REVERSE(@all_bytes), REVERSE(@all_bytes), REVERSE(@all_bytes), REVERSE(@all_bytes)),
 (3, 'trailing zero and space bytes', X'41000000000000000000000000000000', X'4100', X'2020', X'00', X'0000', X'4120', X'20'),
 (4, 'empty', '', '', '', '', '', '', ''),
 (5, 'null', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (6, 'escape-hostile', X'5C275C225C30001A0D0A09085C6E5C', X'27273B3B2A2F24242F2F', X'5C', X'27', X'22', CONCAT(X'0D0A', 'DELIMITER ;;', X'0D0A'), X'602E60'),
 (7, 'large (1 MiB + 1 byte)', NULL, NULL, NULL, NULL, REPEAT(@all_bytes, 256), CONCAT(REPEAT(@all_bytes, 4096), X'FF'), NULL);

-- ---------------------------------------------------------------------------
-- Character strings and character sets
-- ---------------------------------------------------------------------------
CREATE TABLE texts (
  id INT NOT NULL PRIMARY KEY,
  note VARCHAR(40) NOT NULL,
  c10 CHAR(10),
  vc VARCHAR(255),
  tt TINYTEXT,
  t TEXT,
  mt MEDIUMTEXT,
  lt LONGTEXT,
  vc_bin VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
  vc_latin1 VARCHAR(255) CHARACTER SET latin1 COLLATE latin1_swedish_ci,
  t_latin1 TEXT CHARACTER SET latin1,
  vc_mb3 VARCHAR(255) CHARACTER SET utf8mb3,
  vc_ucs2 VARCHAR(100) CHARACTER SET ucs2,
  vc_utf16 VARCHAR(100) CHARACTER SET utf16,
  vc_utf32 VARCHAR(100) CHARACTER SET utf32,
  vc_sjis VARCHAR(100) CHARACTER SET sjis,
  vc_gbk VARCHAR(100) CHARACTER SET gbk,
  vc_cp1251 VARCHAR(100) CHARACTER SET cp1251,
  vc_ascii VARCHAR(100) CHARACTER SET ascii,
  t_compressed TEXT COMPRESSED
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;

INSERT INTO texts VALUES
 (1, 'emoji and cjk ext b',
     '😀𠀀🏳️‍🌈', 'Grinning 😀, CJK ext B 𠀀𠀁𪚥, flag 🏳️‍🌈, family 👨‍👩‍👧‍👦, math 𝔘𝔫𝔦', '𝄞 music', 'Ωμέγα Ω Å Å (NFC vs NFD: é é)', 'ZWJ‍ZWNJ‌BOM﻿', REPEAT('😀', 10000),
     '😀 binary-collated Aa', 'café ñ ß ÿ Œ € ‰ ™', 'Ærø åkésé Ð þ ¿ « » ° ± ²', 'BMP only: 中文 日本語 한국어',
     'ucs2: 中文 Ω', 'utf16: 😀 𠀀', 'utf32: 😀 𠀀', 'sjis: 表ソ能 ｱｲｳ', 'gbk: 中文 運', 'cp1251: Привет ёЁ', 'plain ascii ~`!', REPEAT('compress me 😀 ', 500)),
 (2, 'escape-hostile',
     'a\'b"c', 'quote \' dq " bt ` bs \\ nul \0 ctrlz \Z cr \r lf \n tab \t ;; */ /*! $$ //', 'DELIMITER ;;', '-- not a comment\n# nor this\n/* nor this */', '\\\\', '\'; DROP TABLE ints; --',
     'ends with backslash \\', 'latin1 \' \\ \0', CONVERT(@all_bytes USING latin1), 'mb3 \\ \'',
     '\'', '"', '`', '\\', '\0', '\n', '\r', '\0x');
INSERT INTO texts VALUES
 (3, 'trailing spaces', 'pad   ', 'pad   ', 'pad   ', 'pad   ', '   ', ' ', 'pad   ', 'pad   ', 'pad   ', 'pad   ', 'pad   ', 'pad   ', 'pad   ', 'pad   ', 'pad   ', 'pad   ', 'pad   ', 'pad   '),
 (4, 'empty strings', '', '', '', '', '', '', '', '', '', '', '', '', '', '', '', '', '', ''),
 (5, 'nulls', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (6, 'the string NULL', 'NULL', 'NULL', '\\N', 'null', 'NULL', '\\N', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL');

-- NULL vs empty string vs the literal text, in a table with no primary key
-- (and therefore an unordered dump).
CREATE TABLE nullish (
  a VARCHAR(10),
  b VARCHAR(10) NOT NULL DEFAULT '',
  c INT NULL,
  d TEXT
) ENGINE=InnoDB;
INSERT INTO nullish VALUES
 (NULL, '', NULL, NULL), ('', '', 0, ''), ('NULL', 'NULL', NULL, 'NULL'), ('\\N', '\\N', NULL, '\\N'),
 (NULL, '', NULL, NULL), (' ', ' ', -0, ' ');

-- ---------------------------------------------------------------------------
-- JSON
-- ---------------------------------------------------------------------------
CREATE TABLE jsons (
  id INT NOT NULL PRIMARY KEY,
  j JSON,
  j_path VARCHAR(100) AS (JSON_UNQUOTE(JSON_EXTRACT(j, '$.k'))) VIRTUAL
);
INSERT INTO jsons (id, j) VALUES
 (1, '{"k": "v", "arr": [1, 2.5e300, -0, null, true, false, "😀", "\\u0000", "\\"q\\""], "nested": {"a": {"b": {"c": [[[]]]}}}}'),
 (2, '[]'), (3, '{}'), (4, 'null'), (5, '"just a string with \' and \\\\"'),
 (6, '12345678901234567890123456789012345678901234567890'),
 (7, '{"k":"  not   normalised  ",   "dup":1, "dup":2}'),
 (8, NULL);

-- ---------------------------------------------------------------------------
-- Spatial (values carry SRIDs)
-- ---------------------------------------------------------------------------
CREATE TABLE geometries (
  id INT NOT NULL PRIMARY KEY,
  g GEOMETRY,
  p POINT NOT NULL,
  poly POLYGON,
  gc GEOMETRYCOLLECTION,
  mp MULTIPOINT,
  ls LINESTRING,
  SPATIAL INDEX sp_p (p)
);
INSERT INTO geometries VALUES
 (1, ST_GeomFromText('POINT(1 2)', 4326), ST_GeomFromText('POINT(-180 -90)', 4326),
     ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0),(2 2,3 2,3 3,2 3,2 2))', 3857),
     ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 1),LINESTRING(0 0,1 1,2 2),POLYGON((0 0,1 0,1 1,0 0)))', 4326),
     ST_GeomFromText('MULTIPOINT(0 0,1 1,2 2)'), ST_GeomFromText('LINESTRING(0 0,1.5 1.5,1e300 -1e300)')),
 (2, ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))'), ST_GeomFromText('POINT(1.7976931348623157e308 -2.2250738585072014e-308)', 0),
     NULL, ST_GeomFromText('GEOMETRYCOLLECTION EMPTY'), NULL, NULL),
 (3, NULL, ST_GeomFromText('POINT(0.1 -0.2)', 2000000000), NULL, NULL, NULL, NULL);

-- ---------------------------------------------------------------------------
-- ENUM / SET, INET4/INET6/UUID
-- ---------------------------------------------------------------------------
CREATE TABLE enums_sets (
  id INT NOT NULL PRIMARY KEY,
  e ENUM('a', 'b', 'c'),
  e_with_empty ENUM('', 'x', 'y'),
  e_hostile ENUM('it''s', 'dq"', 'bt`', 'sp ace', 'ü', '😀', '1', '0'),
  s SET('a', 'b', 'c', 'd'),
  s_hostile SET('it''s', 'ü', '😀', '')
);
-- Invalid values in non-strict mode become the error value '' (index 0).
INSERT INTO enums_sets VALUES
 (1, 'a', '', 'it''s', 'a,b,c,d', 'it''s,ü,😀'),
 (2, 'zzz', 'zzz', 'zzz', '', ''),
 (3, 'c', 'y', '😀', 'd,a', '😀'),
 (4, NULL, NULL, NULL, NULL, NULL),
 (5, 3, 1, 7, 15, 15),
 (6, 'b', 'x', '1', 'b', 'ü'),
 (7, 'a', 'x', 'bt`', 'a', 'it''s');
-- Index 0 of e_with_empty (error value) vs index 1 (the real '' member).
UPDATE enums_sets SET e_with_empty = 0 WHERE id = 5;

-- 4-byte characters in column metadata: the server keeps them, but SHOW
-- CREATE TABLE and information_schema print them as '?'.
CREATE TABLE emoji_meta (
  id INT NOT NULL PRIMARY KEY,
  c VARCHAR(20) DEFAULT 'dflt 😀' COMMENT 'column comment 😀',
  e ENUM('x', '😀', '𠀀') DEFAULT '😀',
  g VARCHAR(40) AS (CONCAT(c, ' 𠀀')) VIRTUAL
) COMMENT 'table comment 😀';
INSERT INTO emoji_meta (id) VALUES (1);
INSERT INTO emoji_meta (id, c, e) VALUES (2, '😀', '𠀀'), (3, 'x', 'x');

CREATE TABLE net_ids (
  id INT NOT NULL PRIMARY KEY,
  ip6 INET6,
  ip4 INET4,
  u UUID
);
INSERT INTO net_ids VALUES
 (1, '::', '0.0.0.0', '00000000-0000-0000-0000-000000000000'),
 (2, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '255.255.255.255', 'ffffffff-ffff-ffff-ffff-ffffffffffff'),
 (3, '::ffff:192.0.2.1', '192.0.2.1', '123e4567-e89b-12d3-a456-426614174000'),
 (4, '2001:db8::1', '10.0.0.1', '6ccd780c-baba-1026-9564-5b8c656024db'),
 (5, '::1', '127.0.0.1', '0192a6c8-7b5e-7abc-8def-0123456789ab'),
 (6, NULL, NULL, NULL);

-- ---------------------------------------------------------------------------
-- Generated, invisible, defaults, constraints, indexes, table options
-- ---------------------------------------------------------------------------
CREATE TABLE generated (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  a INT NOT NULL,
  b VARCHAR(50),
  v_virt INT AS (a * 2) VIRTUAL,
  v_stored VARCHAR(60) AS (CONCAT(b, '/', a)) STORED,
  v_json VARCHAR(20) AS (JSON_VALUE(CONCAT('{"x":', a, '}'), '$.x')) VIRTUAL,
  hidden INT INVISIBLE DEFAULT 42,
  hidden_ts TIMESTAMP(6) INVISIBLE NULL DEFAULT NULL,
  created DATETIME(6) NOT NULL DEFAULT '2000-01-01 00:00:00.000000',
  def_expr VARCHAR(80) DEFAULT (CONCAT('def-', 1 + 1)),
  INDEX idx_virt (v_virt),
  INDEX idx_desc (a DESC, b),
  INDEX idx_ignored (b) IGNORED,
  CONSTRAINT `chk "a" 'positive'` CHECK (a >= 0)
) AUTO_INCREMENT=100 COMMENT='it''s a "comment" with */ and ;;';
INSERT INTO generated (a, b) VALUES (1, 'one'), (2, 'two'), (3, NULL), (0, '');
INSERT INTO generated (a, b, hidden, hidden_ts) VALUES (7, 'seven', -1, '2001-02-03 04:05:06.789');
INSERT INTO generated (id, a, b) VALUES (1000, 9, 'gap');
DELETE FROM generated WHERE id = 1000;   -- AUTO_INCREMENT counter stays at 1001

CREATE TABLE auto_inc (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  v INT
) ENGINE=InnoDB;
INSERT INTO auto_inc (v) SELECT seq FROM seq_1_to_20;
DELETE FROM auto_inc WHERE id > 10;      -- counter 21, max(id) 10

CREATE TABLE myisam_t (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  txt TEXT,
  FULLTEXT INDEX ft (txt)
) ENGINE=MyISAM CHECKSUM=1 DELAY_KEY_WRITE=1;
INSERT INTO myisam_t (txt) VALUES ('the quick brown fox'), ('jumps over the lazy dog'), ('😀 emoji in myisam');

CREATE TABLE aria_t (
  id INT NOT NULL PRIMARY KEY,
  v VARCHAR(20)
) ENGINE=Aria TRANSACTIONAL=1 PAGE_CHECKSUM=1;
INSERT INTO aria_t VALUES (1, 'aria'), (2, NULL);

CREATE TABLE parted (
  id INT NOT NULL,
  d DATE NOT NULL,
  v VARCHAR(20),
  PRIMARY KEY (id, d)
) PARTITION BY RANGE (YEAR(d)) (
  PARTITION p_old VALUES LESS THAN (2000) COMMENT 'old',
  PARTITION p_2000s VALUES LESS THAN (2010),
  PARTITION p_max VALUES LESS THAN MAXVALUE
);
INSERT INTO parted VALUES (1, '1999-12-31', 'old'), (2, '2005-06-15', 'mid'), (3, '2024-01-01', 'new'), (4, '0000-00-00', 'zero');

-- Application-time period with WITHOUT OVERLAPS.
CREATE TABLE app_period (
  id INT NOT NULL,
  price DECIMAL(10,2),
  valid_from DATE NOT NULL,
  valid_to DATE NOT NULL,
  PERIOD FOR valid (valid_from, valid_to),
  UNIQUE KEY uk_valid (id, valid WITHOUT OVERLAPS)
);
INSERT INTO app_period VALUES (1, 10.00, '2020-01-01', '2021-01-01'), (1, 12.00, '2021-01-01', '2030-01-01'), (2, 5.00, '2000-01-01', '9999-12-31');
-- Splits a row into three.
UPDATE app_period FOR PORTION OF valid FROM '2022-01-01' TO '2023-01-01' SET price = 99.99 WHERE id = 1;

-- ---------------------------------------------------------------------------
-- Foreign keys
-- ---------------------------------------------------------------------------
CREATE TABLE parent (
  id INT NOT NULL PRIMARY KEY,
  name VARCHAR(30)
);
CREATE TABLE child (
  id INT NOT NULL PRIMARY KEY,
  parent_id INT,
  CONSTRAINT `fk child->parent "cascade"` FOREIGN KEY (parent_id) REFERENCES parent (id)
    ON DELETE CASCADE ON UPDATE SET NULL
);
CREATE TABLE employee (
  id INT NOT NULL PRIMARY KEY,
  name VARCHAR(30),
  manager_id INT,
  CONSTRAINT fk_self FOREIGN KEY (manager_id) REFERENCES employee (id) ON DELETE SET NULL
);
INSERT INTO parent VALUES (1, 'p1'), (2, 'p2'), (3, 'p3');
INSERT INTO child VALUES (10, 1), (11, 1), (20, 2), (30, 3), (31, NULL);
DELETE FROM parent WHERE id = 3;   -- cascades to child 30
-- Manager ids point forward, so an id-ordered load needs FK checks off.
SET foreign_key_checks = 0;
INSERT INTO employee VALUES (1, 'emp', 3), (2, 'emp2', 3), (3, 'boss', NULL), (4, 'self', 4);
SET foreign_key_checks = 1;

-- ---------------------------------------------------------------------------
-- Hostile identifiers
-- ---------------------------------------------------------------------------
CREATE TABLE `select` (
  `from` INT NOT NULL PRIMARY KEY,
  `order` VARCHAR(20),
  `key` INT,
  `group` INT,
  `where` TEXT
);
INSERT INTO `select` VALUES (1, 'first', 10, 100, 'x'), (2, 'second', 20, 200, NULL), (3, 'third', 30, 300, '');

CREATE TABLE `we``ird "name"` (
  `it's` INT NOT NULL PRIMARY KEY,
  `col "dq"` VARCHAR(20),
  `back``tick` VARCHAR(20),
  `sp ace` INT,
  `ünï 表` VARCHAR(20),
  `*/;;` INT,
  INDEX `idx ``odd`` 'name'` (`sp ace`)
) COMMENT 'table with a hostile name';
INSERT INTO `we``ird "name"` VALUES (1, 'dq', 'bt', 5, '表', 1), (2, NULL, '`', -5, 'ü', 2);

CREATE TABLE `tábla ünïcödé 表` (
  `ид` INT NOT NULL PRIMARY KEY,
  `名前` VARCHAR(20)
);
INSERT INTO `tábla ünïcödé 表` VALUES (1, '名前'), (2, 'ünï');

CREATE TABLE `a.b/c\d` (
  `x.y` INT NOT NULL PRIMARY KEY
);
INSERT INTO `a.b/c\d` VALUES (1), (2);

-- ---------------------------------------------------------------------------
-- Bulk table (5,000 rows)
-- ---------------------------------------------------------------------------
CREATE TABLE bulk (
  id INT NOT NULL PRIMARY KEY,
  h CHAR(32) NOT NULL,
  f DOUBLE,
  dt DATETIME(6),
  txt VARCHAR(100),
  INDEX (h)
);
INSERT INTO bulk
SELECT seq, MD5(seq), seq / 7e0, TIMESTAMP'2000-01-01 00:00:00' + INTERVAL seq * 997003001 MICROSECOND,
       IF(seq % 10 = 0, NULL, CONCAT('row ', seq, IF(seq % 7 = 0, ' 😀 \' " \\ ', '')))
FROM seq_1_to_5000;

-- ---------------------------------------------------------------------------
-- System-versioned tables with history
-- ---------------------------------------------------------------------------
CREATE TABLE sv_implicit (
  id INT NOT NULL PRIMARY KEY,
  v VARCHAR(20)
) WITH SYSTEM VERSIONING;
INSERT INTO sv_implicit VALUES (1, 'one'), (2, 'two'), (3, 'three');
UPDATE sv_implicit SET v = 'one v2' WHERE id = 1;
UPDATE sv_implicit SET v = 'one v3' WHERE id = 1;
DELETE FROM sv_implicit WHERE id = 2;
INSERT INTO sv_implicit VALUES (4, 'four');

CREATE TABLE sv_explicit (
  id INT NOT NULL PRIMARY KEY,
  qty INT,
  unversioned_note VARCHAR(20) WITHOUT SYSTEM VERSIONING,
  valid_start TIMESTAMP(6) GENERATED ALWAYS AS ROW START INVISIBLE,
  valid_end TIMESTAMP(6) GENERATED ALWAYS AS ROW END INVISIBLE,
  PERIOD FOR SYSTEM_TIME (valid_start, valid_end)
) WITH SYSTEM VERSIONING;
INSERT INTO sv_explicit (id, qty, unversioned_note) VALUES (1, 10, 'a'), (2, 20, 'b');
UPDATE sv_explicit SET qty = qty + 1;
UPDATE sv_explicit SET unversioned_note = 'changed' WHERE id = 1;
DELETE FROM sv_explicit WHERE id = 2;

CREATE TABLE sv_parted (
  id INT NOT NULL,
  v INT
) WITH SYSTEM VERSIONING
  PARTITION BY SYSTEM_TIME (PARTITION p_hist HISTORY, PARTITION p_cur CURRENT);
INSERT INTO sv_parted VALUES (1, 1), (2, 2);
UPDATE sv_parted SET v = v * 10;
DELETE FROM sv_parted WHERE id = 2;

-- Transaction-precise versioning (row start/end are transaction ids).
CREATE TABLE sv_trx (
  id INT NOT NULL PRIMARY KEY,
  v INT,
  trx_start BIGINT UNSIGNED GENERATED ALWAYS AS ROW START INVISIBLE,
  trx_end BIGINT UNSIGNED GENERATED ALWAYS AS ROW END INVISIBLE,
  PERIOD FOR SYSTEM_TIME (trx_start, trx_end)
) ENGINE=InnoDB WITH SYSTEM VERSIONING;
INSERT INTO sv_trx VALUES (1, 1), (2, 2);
UPDATE sv_trx SET v = 5 WHERE id = 1;
DELETE FROM sv_trx WHERE id = 2;

-- ---------------------------------------------------------------------------
-- Sequences (state advanced by NEXTVAL), one used as a column default
-- ---------------------------------------------------------------------------
CREATE SEQUENCE seq_plain;
CREATE SEQUENCE seq_cached START WITH 100 INCREMENT BY 7 MINVALUE 1 MAXVALUE 1000000 CACHE 20 CYCLE;
DO NEXTVAL(seq_cached), NEXTVAL(seq_cached), NEXTVAL(seq_cached);
CREATE SEQUENCE `seq "s" ``t``` START WITH -1 INCREMENT BY -3 MINVALUE -1000 MAXVALUE 0 NOCACHE NOCYCLE;
DO NEXTVAL(`seq "s" ``t```), NEXTVAL(`seq "s" ``t```);
CREATE SEQUENCE seq_setval START WITH 1 INCREMENT BY 1 CACHE 1000;
DO SETVAL(seq_setval, 500);
-- Has wrapped around once (cycle_count = 1).
CREATE SEQUENCE seq_cycled START WITH 1 MINVALUE 1 MAXVALUE 3 INCREMENT BY 1 NOCACHE CYCLE;
DO NEXTVAL(seq_cycled), NEXTVAL(seq_cycled), NEXTVAL(seq_cycled), NEXTVAL(seq_cycled), NEXTVAL(seq_cycled);
CREATE SEQUENCE seq_default;
CREATE TABLE seq_user (
  id BIGINT NOT NULL DEFAULT (NEXT VALUE FOR seq_default) PRIMARY KEY,
  v VARCHAR(10)
);
INSERT INTO seq_user (v) VALUES ('a'), ('b'), ('c');

-- ---------------------------------------------------------------------------
-- Views (views on views, hostile names, options)
-- ---------------------------------------------------------------------------
CREATE VIEW v_base AS SELECT id, a, b, v_virt FROM generated WHERE a > 0;
CREATE ALGORITHM=MERGE SQL SECURITY INVOKER VIEW v_on_v AS
  SELECT id, a * 10 AS a10, CONCAT(b, ' */ ;; ') AS b_hostile FROM v_base WITH CASCADED CHECK OPTION;
CREATE ALGORITHM=TEMPTABLE VIEW `view "v" 'w' ``x``` (`col ``1```, `col "2"`) AS
  SELECT a10, b_hostile FROM v_on_v;
CREATE VIEW `select view` AS SELECT `from`, `order` FROM `select`;
CREATE VIEW v_join AS
  SELECT c.id AS child_id, p.name AS parent_name FROM child c LEFT JOIN parent p ON p.id = c.parent_id;
CREATE VIEW v_history AS SELECT id, v FROM sv_implicit FOR SYSTEM_TIME ALL;
-- A view whose text names the database explicitly (as users write).
EXECUTE IMMEDIATE CONCAT('CREATE VIEW v_qualified AS SELECT `from` FROM `', DATABASE(), '`.`select`');

-- ---------------------------------------------------------------------------
-- Routines
-- ---------------------------------------------------------------------------
CREATE TABLE audit_log (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  msg VARCHAR(255)
);

DELIMITER ;;
CREATE FUNCTION f_double(x INT) RETURNS INT
  DETERMINISTIC NO SQL
  COMMENT 'it''s "deterministic" ;; */ $$'
RETURN x * 2;;

CREATE FUNCTION `select`(x VARCHAR(10) CHARSET latin1) RETURNS VARCHAR(40) CHARSET utf8mb4
  NOT DETERMINISTIC READS SQL DATA SQL SECURITY INVOKER
BEGIN
  -- a line comment with ;; inside
  /* a block comment with ;; and DELIMITER $$ */
  DECLARE r VARCHAR(40) DEFAULT '😀';
  SELECT CONCAT(r, x, ';;', '$$', '//', 'END;') INTO r;
  RETURN r;
END;;

CREATE PROCEDURE `proc ``p`` 'q' "r"`(IN a INT, INOUT b VARCHAR(20), OUT c DECIMAL(65,30))
  MODIFIES SQL DATA
  COMMENT 'hostile name; writes audit_log'
BEGIN
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN RESIGNAL; END;
  INSERT INTO audit_log (msg) VALUES (CONCAT('proc called with ', a, ' DELIMITER ;; */'));
  SET b = CONCAT(b, '!'), c = 1 / 3;
END;;
DELIMITER ;

-- Created under a different sql_mode: the body only parses with ANSI_QUOTES
-- ("from" is an identifier) and PIPES_AS_CONCAT.
SET sql_mode = 'ANSI_QUOTES,PIPES_AS_CONCAT,NO_ENGINE_SUBSTITUTION';
DELIMITER ;;
CREATE FUNCTION f_ansi() RETURNS VARCHAR(100)
  READS SQL DATA
RETURN (SELECT "order" || '-' || "from" FROM "select" WHERE "from" = 1);;
DELIMITER ;

-- A view that calls a stored function (dump order: routines vs views).
CREATE VIEW v_func AS SELECT id, f_double(a) AS dbl, `select`('x') AS sel FROM generated;

-- Oracle-mode package.
SET sql_mode = 'ORACLE';
DELIMITER ;;
CREATE PACKAGE pkg_util AS
  FUNCTION answer RETURN INT;
  PROCEDURE bump(x IN OUT INT);
END;;
CREATE PACKAGE BODY pkg_util AS
  FUNCTION answer RETURN INT AS BEGIN RETURN 42; END;
  PROCEDURE bump(x IN OUT INT) AS BEGIN x := x + 1; END;
END;;
DELIMITER ;
SET sql_mode = 'NO_ENGINE_SUBSTITUTION';

-- ---------------------------------------------------------------------------
-- Triggers (BEFORE/AFTER, ordering, hostile bodies and names)
-- ---------------------------------------------------------------------------
CREATE TABLE trig_target (
  id INT NOT NULL PRIMARY KEY,
  note VARCHAR(255),
  counter INT DEFAULT 0
);
INSERT INTO trig_target VALUES (1, 'before triggers existed', 0), (2, NULL, 5);

DELIMITER ;;
CREATE TRIGGER trg_bi BEFORE INSERT ON trig_target FOR EACH ROW
  SET NEW.note = CONCAT(IFNULL(NEW.note, ''), ' ;; DELIMITER $$ // END; */ /*! \'q\' "dq" `bt`');;

CREATE TRIGGER trg_bi_second BEFORE INSERT ON trig_target FOR EACH ROW FOLLOWS trg_bi
  SET NEW.counter = NEW.counter + 1;;

CREATE TRIGGER trg_bi_first BEFORE INSERT ON trig_target FOR EACH ROW PRECEDES trg_bi
  SET NEW.counter = IFNULL(NEW.counter, 0) * 10;;

CREATE TRIGGER `trg ``x`` 'y' "z"` AFTER UPDATE ON trig_target FOR EACH ROW
BEGIN
  -- comment ;;
  IF NEW.note <> OLD.note THEN
    INSERT INTO audit_log (msg) VALUES (CONCAT('updated ', OLD.id, ': ', OLD.note, ' -> ', NEW.note));
  END IF;
END;;

CREATE TRIGGER trg_ad AFTER DELETE ON `select` FOR EACH ROW
  INSERT INTO audit_log (msg) VALUES (CONCAT('deleted from select: ', OLD.`from`));;
DELIMITER ;

SET sql_mode = 'ANSI_QUOTES,NO_ENGINE_SUBSTITUTION';
CREATE TRIGGER trg_ansi BEFORE UPDATE ON "we`ird ""name""" FOR EACH ROW SET NEW."sp ace" = NEW."sp ace" + 1;
SET sql_mode = 'NO_ENGINE_SUBSTITUTION';

-- A trigger whose body names the database explicitly.
EXECUTE IMMEDIATE CONCAT('CREATE TRIGGER trg_qualified AFTER INSERT ON parent FOR EACH ROW ',
  'INSERT INTO `', DATABASE(), '`.audit_log (msg) VALUES (CONCAT(''new parent '', NEW.id))');

-- Fire some of them so the tables show their effect.
INSERT INTO trig_target (id, note, counter) VALUES (3, 'inserted', 1);
UPDATE trig_target SET note = 'changed' WHERE id = 1;
DELETE FROM `select` WHERE `from` = 3;
INSERT INTO parent VALUES (4, 'p4');
CALL `proc ``p`` 'q' "r"`(7, @b, @c);

-- ---------------------------------------------------------------------------
-- Events (the sandbox runs with the scheduler off; none of them fire)
-- NB: no event text contains two consecutive semicolons: mariadb-dump
-- --events loops (practically) forever on such an event, see
-- hostile_event_delimiter.sql.
-- ---------------------------------------------------------------------------
DELIMITER ;;
CREATE EVENT ev_disabled
  ON SCHEDULE EVERY 1 HOUR STARTS '2030-01-01 00:00:00' ENDS '2031-01-01 00:00:00'
  ON COMPLETION PRESERVE DISABLE
  COMMENT 'disabled; it''s "hostile" */'
DO
BEGIN
  -- ; DELIMITER $$ //
  INSERT INTO audit_log (msg) VALUES ('event ; */ $$ fired');
END;;

CREATE EVENT ev_at
  ON SCHEDULE AT '2037-06-01 12:00:00'
  ON COMPLETION PRESERVE ENABLE
DO DELETE FROM audit_log WHERE id < 0;;

CREATE EVENT `ev ``e`` 'f' "g"`
  ON SCHEDULE EVERY 5 MINUTE
  ON COMPLETION NOT PRESERVE DISABLE ON SLAVE
DO UPDATE trig_target SET counter = counter + 1;;

CREATE EVENT ev_quarter
  ON SCHEDULE EVERY '1:30' HOUR_MINUTE STARTS '2035-01-01 00:00:00'
  ENABLE
DO DO 1;;
DELIMITER ;

SET time_zone = '+05:30';
CREATE EVENT ev_tz ON SCHEDULE AT '2036-01-01 00:00:00' ON COMPLETION PRESERVE DISABLE DO DO 2;
SET time_zone = '+00:00';

SET sql_mode = 'ANSI_QUOTES,NO_ENGINE_SUBSTITUTION';
CREATE EVENT ev_ansi ON SCHEDULE EVERY 1 DAY STARTS '2035-06-01 00:00:00' DISABLE
  DO UPDATE "select" SET "key" = "key" + 1;
SET sql_mode = 'NO_ENGINE_SUBSTITUTION';

-- ---------------------------------------------------------------------------
-- Change the database default collation after routines/triggers/events exist.
-- ---------------------------------------------------------------------------
ALTER DATABASE COLLATE utf8mb4_unicode_520_ci;
