<?php
// The worker dies on a segmentation fault, as with a crashing extension.
posix_kill(getmypid(), 11);
echo 'still alive';
