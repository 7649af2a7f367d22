-- An event whose text contains ';;'.  mariadb-dump --events (10.11 and
-- earlier, same code in MySQL) never finishes on it: create_delimiter() in
-- client/mysqldump.c increments the loop bound instead of the candidate
-- delimiter length, so it spins until a signed int overflows.
-- Kept apart from corpus.sql so the raw round trip of the corpus can run.
SET NAMES utf8mb4;
SET time_zone = '+00:00';
DELIMITER $$
CREATE EVENT ev_double_semicolon
  ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE
  COMMENT 'body contains two semicolons'
DO SELECT 'a;;b'$$
DELIMITER ;
