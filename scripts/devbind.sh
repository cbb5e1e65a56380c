#!/usr/bin/env bash
# Binds a director NIC to DPDK, for real hardware (not used by the netns lab).
#   devbind.sh status
#   devbind.sh bind PCI [DRIVER]      default DRIVER vfio-pci (modprobe'd first)
#   devbind.sh unbind PCI KERNEL_DRIVER   give the NIC back to the kernel (e.g. ixgbe, i40e, mlx5_core)
# Mellanox/NVIDIA NICs (mlx5) stay on their kernel driver: DPDK drives them
# through it, so do not bind them; just name their PCI address in rvs.toml.
# The interface must be down and hold no addresses before it is bound.
set -euo pipefail
DEVBIND=$(command -v dpdk-devbind.py || command -v dpdk-devbind || true)
[ -n "$DEVBIND" ] || { echo "dpdk-devbind.py not found: apt-get install dpdk" >&2; exit 1; }
case "${1:-status}" in
  status) "$DEVBIND" --status ;;
  bind)
    pci=${2:?PCI address, e.g. 0000:03:00.0}; drv=${3:-vfio-pci}
    if [ "$drv" = vfio-pci ]; then
      modprobe vfio-pci
      # Without an IOMMU (some VMs), vfio needs no-IOMMU mode.
      if [ ! -d /sys/kernel/iommu_groups ] || [ -z "$(ls -A /sys/kernel/iommu_groups 2>/dev/null)" ]; then
        echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode
        echo "devbind: no IOMMU found: vfio no-IOMMU mode enabled" >&2
      fi
    fi
    "$DEVBIND" --bind="$drv" "$pci"
    "$DEVBIND" --status-dev net | grep -F "$pci" ;;
  unbind)
    pci=${2:?PCI address}; drv=${3:?kernel driver to return the NIC to}
    "$DEVBIND" --bind="$drv" "$pci" ;;
  *) echo "usage: $0 status | bind PCI [DRIVER] | unbind PCI KERNEL_DRIVER" >&2; exit 2 ;;
esac
