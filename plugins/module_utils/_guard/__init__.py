# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guard after a deploy: the rollback decision (signals -> immediate, standard, partial or none) and the watch
that measures the signals in rounds until a rollback is called for."""
