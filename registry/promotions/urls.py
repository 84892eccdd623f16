from django.urls import path

app_name = "promotions"

# Page views are added by registry/promotions/views.py.
urlpatterns: list = []
