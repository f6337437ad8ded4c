//! Finding the main FPM config file and the php-fpm binary that goes with it.
