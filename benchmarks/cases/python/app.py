import requests, attrs, six
print("ok", requests.__version__)
