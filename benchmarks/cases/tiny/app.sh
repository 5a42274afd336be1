#!/bin/sh
echo "$GREETING from the tiny benchmark"
