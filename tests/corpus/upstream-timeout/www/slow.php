<?php $s = (int)($_GET['s'] ?? 5); $end = microtime(true) + $s;
while (microtime(true) < $end) { usleep(20000); }
echo 'slept ', $s;
