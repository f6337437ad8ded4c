<?php
// A deploy that calls a function it forgot to ship.
echo render_page_header();
