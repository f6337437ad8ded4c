<?php
// A debug header that grew with the session.
header('X-Debug-Trace: ' . str_repeat('frame;', 800));
echo 'ok';
