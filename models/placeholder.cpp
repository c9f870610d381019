// placeholder: models land here
