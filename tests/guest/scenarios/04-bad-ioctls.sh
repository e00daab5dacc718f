# Wrong ioctl numbers and sizes, bad pointers, huge lengths and random
# garbage: errors, never an oops (/init checks the log and taint flags).
# timeout: 180
vmaug-abuse
vmaugment ping --count 10
