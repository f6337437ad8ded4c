<?php echo 'hello from ', getmypid();
