"""KernelWarehouse (Li et al., ICML 2024): dynamic convolutions whose kernels mix cells of a warehouse shared by a
stage's layers; the manager that sizes and allocates the warehouses, and the temperature schedule.
"""

from .attention import WarehouseAttention
from .conv import KWConv1d, KWConv2d, KWConv3d, KWConvNd, KWLinear
from .manager import WarehouseManager
from .network import resnet_stages, to_kernel_warehouse
from .temperature import KWTemperatureSchedule, set_warehouse_temperature

__all__ = [
    "KWConv1d",
    "KWConv2d",
    "KWConv3d",
    "KWConvNd",
    "KWLinear",
    "KWTemperatureSchedule",
    "WarehouseAttention",
    "WarehouseManager",
    "resnet_stages",
    "set_warehouse_temperature",
    "to_kernel_warehouse",
]
