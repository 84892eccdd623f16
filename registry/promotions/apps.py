from django.apps import AppConfig


class PromotionsConfig(AppConfig):
    name = "registry.promotions"
    label = "promotions"
    verbose_name = "Promotions"
