"""Revenue schedules: each posted document's revenue recognised over the days it bills
(flat fees ratably, usage as it was consumed) and booked in the ERP as journals."""
