"""PGD-AT (Madry et al. 2018): CE-PGD inner maximisation, CE on the adversarial examples."""

from methods.base import Method, register


@register("pgd-at")
class PGDAT(Method):
    summary = "PGD adversarial training: CE attack, CE outer loss on the AEs (Madry et al. 2018)"
